"""Catalogue QA: labels the model disputes, near-identical photos under several ids, and both measured on a copy of a
catalogue with planted faults."""
