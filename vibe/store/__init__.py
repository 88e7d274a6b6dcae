"""What a build leaves on disk and a query loads: the embedding cache, FAISS indexes, and the artifact set with its
manifest (published atomically, checked on load)."""
