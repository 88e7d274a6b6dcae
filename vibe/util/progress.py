"""Progress reporting shared by the CLI (tqdm on a terminal, plain lines in a log) and the dashboard (st.progress)."""
from __future__ import annotations

import sys
import time
from typing import Protocol


class Progress(Protocol):
    def __call__(self, stage: str, done: int, total: int) -> None: ...


def silent(stage: str, done: int, total: int) -> None:
    """A progress callback that reports nothing."""


class LineProgress:
    """Plain `stage: done/total` lines for logs, not terminals: the first and the last of a stage, each tenth of the
    way, and at least one every `every` seconds while it runs."""

    def __init__(self, stream=None, every: float = 10.0):
        self.stream, self.every = stream or sys.stderr, every
        self._last: dict[str, tuple[float, int]] = {}  # stage -> (when, tenth) of its last line

    def __call__(self, stage: str, done: int, total: int) -> None:
        now, tenth = time.monotonic(), (10 * done) // max(1, total)
        last = self._last.get(stage)
        if last is None or done >= total or tenth > last[1] or now - last[0] >= self.every:
            self._last[stage] = (now, tenth)
            print(f"{stage}: {done}/{total}", file=self.stream, flush=True)

    def close(self) -> None:
        pass


class TqdmProgress:
    """One tqdm bar per stage, fed by the core's progress callback; plain lines when stderr is not a terminal."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar = None
        self._stage = None
        self._lines = None if sys.stderr.isatty() else LineProgress()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._lines is not None:
            return self._lines(stage, done, total)
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
