"""Catalogue QA: how many labels look wrong and which (rankings over out-of-fold probabilities, the project's and
cleanlab's), near-identical photos under several ids (two witnesses), and all of it measured on copies of a catalogue
with planted faults."""
