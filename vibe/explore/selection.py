"""What a click or a lasso in the explorer picks: the latest event of the views on screen, and a clicked item's nearest
neighbours in the space it was clicked in."""
from __future__ import annotations

import numpy as np


def latest_event(events: dict[str, dict | None]) -> tuple[str, dict] | None:
    """(space, event) of the most recent event among the views' last events ({space: event or None}). Each view counts
    its own events, so the views are compared by when an event happened (`at`, ms), not by their counters."""
    seen = [(e.get("at", 0), e.get("n", 0), space, e) for space, e in events.items() if e]
    if not seen:
        return None
    _, _, space, event = max(seen, key=lambda s: (s[0], s[1]))
    return space, event


def neighbours(art, space: str, row: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cosines) of the k items nearest to `row` in `space` ("clip": the 512-D space, "style": the 256-D style
    space), the item itself first."""
    index = art.clip if space == "clip" else art.style
    return index.search(index.vector(row), k)
