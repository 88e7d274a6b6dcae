"""Plumbing with no fashion in it: atomic files, safetensors checkpoints, progress callbacks, safe image decoding and
the one place vectors are L2-normalised."""
