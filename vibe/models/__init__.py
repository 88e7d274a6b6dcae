"""The networks a query runs and how they load, never how they train: image encoders (backbones, runtimes), the five
attribute heads and the 256-D style projection."""
