"""Boxes in a photo (left, top, right, bottom, in its pixels): how much two overlap, and a box a user gave, checked.
No torch here: the CLI checks a box before it loads any model."""
from __future__ import annotations

from ..errors import VibeError


def iou(a, b) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def check_box(box, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box the user gave (left, top, right, bottom in the photo's pixels), or one clear error saying what is wrong."""
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    except (TypeError, ValueError):
        raise VibeError(f"A box is four numbers, left,top,right,bottom in the photo's pixels (got {box!r}).") from None
    w, h = size
    if x1 <= x0 or y1 <= y0:
        raise VibeError(f"The box {x0},{y0},{x1},{y1} is empty: right must be more than left and bottom more than top.")
    if x0 >= w or y0 >= h or x1 <= 0 or y1 <= 0:
        raise VibeError(f"The box {x0},{y0},{x1},{y1} lies outside the photo ({w}x{h} pixels).")
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if (x1 - x0) < 8 or (y1 - y0) < 8:
        raise VibeError(f"The box {x0},{y0},{x1},{y1} is under 8 pixels wide or high inside the photo: draw it around "
                        "the whole product.")
    return x0, y0, x1, y1
