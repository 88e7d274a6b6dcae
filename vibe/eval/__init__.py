"""Scoring a build on photos it was not trained on, in two families kept apart: held-out kinds of photo (real-photo
backdrops, page screenshots, phone shots, white balance: code no training path imports) and re-shot photos (the
training-style family); ranking metrics, proposal checks, head accuracy views, and the report `python -m vibe eval`
writes."""
