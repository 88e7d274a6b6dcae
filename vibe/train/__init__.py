"""Training recipes of the models that ship in checkpoints/ (vibe-mini, the product segmenter, the proposal detector)
and the composites and scenes they learn from. Never imported by the serving path, nor by the held-out evaluation."""
