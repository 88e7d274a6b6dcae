"""What the server answers from: the bundle of the published build, swapped for the next one when a rebuild is
published (the atomic `current` link moves), without a restart and without failing a request."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..errors import VibeError
from ..models.encoder import Encoder
from ..search.bundle import Bundle, current_build_id, load_bundle

log = logging.getLogger("vibe.serve")


class Served:
    """The current bundle of `workdir`. `bundle()` checks the `current` link (one readlink) and, when a rebuild has been
    published, loads it on the calling request while every other request keeps answering from the previous build; a
    build that fails to load is reported once and the previous one stays in service."""

    def __init__(self, workdir: Path, backbone: str | None = None):
        self.workdir, self.backbone = Path(workdir), backbone
        self._encoders: dict[str, Encoder] = {}
        self._lock = threading.Lock()
        self._failed: str | None = None  # the build id that would not load, so that it is not retried on every request
        self.last_error: str | None = None
        self._bundle = load_bundle(self.workdir, backbone=backbone, encoders=self._encoder)

    def _encoder(self, name: str) -> Encoder:
        # a rebuild with the same backbone reuses the loaded model (and its runtime probe); only that one is kept
        if name not in self._encoders:
            self._encoders = {name: Encoder(name)}
        return self._encoders[name]

    def bundle(self) -> Bundle:
        published = current_build_id(self.workdir)
        if published in (None, self._bundle.build_id, self._failed) or not self._lock.acquire(blocking=False):
            return self._bundle  # nothing new, or another request is loading it: answer from the build in service
        try:
            if current_build_id(self.workdir) == published:
                self._bundle = load_bundle(self.workdir, published, backbone=self.backbone, encoders=self._encoder)
                self.last_error = None
                log.info("now serving build %s", published)
        except VibeError as e:
            self._failed, self.last_error = published, f"build {published} could not be loaded: {e}"
            log.error("%s; still serving build %s", self.last_error, self._bundle.build_id)
        finally:
            self._lock.release()
        return self._bundle
