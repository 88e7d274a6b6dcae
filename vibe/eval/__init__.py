"""Scoring a build on photos it was not trained on: re-shot photos (the training-style family), ranking metrics, head
accuracy views, and the report `python -m vibe eval` writes."""
