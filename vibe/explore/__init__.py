"""The embedding-space view: UMAP layouts of the 512-D and 256-D spaces, cached per build, and the static files the
dashboard's explorer reads."""
