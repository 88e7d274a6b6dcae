"""`python -m vibe bench`: every stage timed against its physical limit and the prototype's way, each figure printed as
it is measured."""
