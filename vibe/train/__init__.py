"""Training recipes of the models that ship in checkpoints/ (vibe-mini, the product segmenter) and the composites
they learn from. Never imported by the serving path."""
