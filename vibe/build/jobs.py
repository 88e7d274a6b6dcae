"""Builds that run in the background (the dashboard's Rebuild page): one per workdir per process, on a worker thread,
with progress, log, result and error readable from any thread, so pages and other sessions keep answering meanwhile."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import BuildConfig
from ..errors import VibeError

log = logging.getLogger("vibe.build.jobs")


@dataclass
class BuildJob:
    """One background run of `vibe.build.pipeline.build`."""

    cfg: BuildConfig
    encoder: object = None  # an Encoder already loaded by the caller, reused instead of loading a second copy
    stages: dict[str, tuple[int, int]] = field(default_factory=dict)  # stage -> (done, total), in the order seen
    lines: list[str] = field(default_factory=list)
    result: object = None  # BuildResult when it succeeded
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    _thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def stage(self) -> str | None:
        return next(reversed(self.stages), None)

    def _progress(self, stage: str, done: int, total: int) -> None:
        self.stages[stage] = (done, total)

    def _run(self) -> None:
        from .pipeline import build

        try:
            self.result = build(self.cfg, progress=self._progress, encoder=self.encoder, log=self.lines.append)
        except VibeError as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001 - a background failure must reach the page as a message, not vanish
            log.exception("background build failed")
            self.error = (f"The build failed unexpectedly ({type(e).__name__}: {e}). The previous build is untouched and "
                          "still answers; the details are in the server log.")
        finally:
            self.finished = time.time()

    def start(self) -> "BuildJob":
        self._thread = threading.Thread(target=self._run, name=f"vibe-build-{self.cfg.workdir}", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the build ends (tests, scripts). True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running


_jobs: dict[str, BuildJob] = {}
_lock = threading.Lock()


def _key(workdir: Path) -> str:
    return str(Path(workdir).resolve())


def start_build(cfg: BuildConfig, encoder=None) -> BuildJob:
    """Start a build of `cfg` on a worker thread; refused while another one runs in this process for the same workdir
    (another process is refused by the build's own file lock, reported as the job's error)."""
    with _lock:
        current = _jobs.get(_key(cfg.workdir))
        if current is not None and current.running:
            raise VibeError(f"Another build is already running in {cfg.workdir} (started "
                            f"{time.strftime('%H:%M:%S', time.localtime(current.started))}); the current artifacts keep "
                            "answering until it is done.")
        job = _jobs[_key(cfg.workdir)] = BuildJob(cfg, encoder)
        return job.start()


def latest_build(workdir: Path) -> BuildJob | None:
    """The running build of this workdir, else the last one that ran in this process (None: none has)."""
    return _jobs.get(_key(workdir))


def rebuild_warnings(current: BuildConfig | None, new: BuildConfig) -> list[str]:
    """What a rebuild from the dashboard would change that its user should confirm first (nothing: the current build
    repeated on the catalogue as it is now). `current`: the config the current build recorded, None when none; what
    the current build already is (a test backbone, a holdout build) is no change."""
    out = []
    if new.backbone == "tiny-random" and (current is None or current.backbone != "tiny-random"):
        out.append("The test backbone (tiny-random) makes matches that mean nothing: use it for smoke runs, not to serve.")
    if new.catalog.subset == "holdout" and (current is None or current.catalog.subset != "holdout"):
        out.append(f"Only the holdout subset ({new.catalog.holdout_fraction:.0%} of the items, by id) would be built: "
                   "every page would answer from that part of the catalogue alone. It is meant for `vibe eval`.")
    if current is not None:
        if new.backbone != current.backbone and new.backbone != "tiny-random":
            out.append(f"The backbone changes ({current.backbone} -> {new.backbone}): every photo is embedded again, "
                       "the heads and the style space are trained from scratch.")
        if Path(new.catalog.root).resolve() != Path(current.catalog.root).resolve():
            out.append(f"Another catalogue ({new.catalog.root}) replaces {current.catalog.root}.")
        elif new.catalog.subset != current.catalog.subset and new.catalog.subset != "holdout":
            out.append(f"The items change ({current.catalog.subset} -> {new.catalog.subset}).")
    return out
