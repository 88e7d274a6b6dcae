"""Progress reporting shared by the CLI (tqdm) and the dashboard (st.progress)."""
from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int) -> None: ...


def silent(stage: str, done: int, total: int) -> None:
    """A progress callback that reports nothing."""


class TqdmProgress:
    """One tqdm bar per stage, fed by the core's progress callback."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar = None
        self._stage = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        if stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = tqdm(total=total, desc=stage, unit="it", leave=True, dynamic_ncols=True)
        self._bar.total = total
        self._bar.update(done - self._bar.n)  # update() honours tqdm's mininterval; refresh() would redraw every call
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self._stage = None
