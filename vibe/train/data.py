"""A catalogue's photos decoded once for training: framed on white as at embedding time, at the training resolution,
each with its product mask (the studio backdrop's complement), ready to be composited."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import VibeError
from ..locate.framing import frame_product, studio_mask
from ..models.mini import to_square_array
from ..util.images import load_image
from ..util.progress import Progress


def decode_framed(paths: list[Path], r: int, framing: bool, progress: Progress) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Every photo framed (as at embedding time) on a white r x r square, and its product mask (for re-shot views)."""
    out = np.zeros((len(paths), r, r, 3), dtype=np.uint8)
    masks = np.zeros((len(paths), r, r), dtype=np.uint8)
    ok = []

    def one(i: int):
        try:
            image = load_image(paths[i])
            out[i] = to_square_array(frame_product(image, 2 * r)[0] if framing else image, r)  # as Encoder.frame_side
            masks[i] = studio_mask(out[i]) * 255
            return i
        except VibeError:
            return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        for n, i in enumerate(pool.map(one, range(len(paths))), 1):
            if i is not None:
                ok.append(i)
            if n % 256 == 0 or n == len(paths):
                progress("decode", n, len(paths))
    return out, masks, ok


