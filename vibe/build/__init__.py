"""The build: catalogue -> embeddings (here or on Ray) -> heads -> style space -> calibration -> indexes, published
atomically; and builds that run in the background for the dashboard."""
