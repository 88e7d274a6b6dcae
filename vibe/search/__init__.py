"""Answering queries over one build: the same-item and mix-&-match modes, search by words, and the loaded bundle
(build + encoder + matcher) that the CLI, the dashboard and the Python API share."""
