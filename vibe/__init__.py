"""Find-My-Vibe core: FashionCLIP embeddings, five attribute heads, a triplet style space and FAISS retrieval."""
__version__ = "0.1.0"

from .errors import VibeError  # noqa: E402

__all__ = ["Encoder", "VibeError", "__version__"]


def __getattr__(name):
    # `from vibe import Encoder` without importing torch for every `import vibe.<light module>`
    if name == "Encoder":
        from .models.encoder import Encoder

        return Encoder
    raise AttributeError(name)
