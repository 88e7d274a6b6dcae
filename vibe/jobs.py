"""Builds that run in the background (the dashboard's Rebuild page): one per workdir per process, on a worker thread,
with progress, log, result and error readable from any thread, so pages and other sessions keep answering meanwhile."""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import BuildConfig
from .errors import VibeError

log = logging.getLogger("vibe.jobs")


@dataclass
class BuildJob:
    """One background run of `vibe.pipeline.build`."""

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
