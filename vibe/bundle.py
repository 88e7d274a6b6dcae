"""Everything a query needs, loaded once: the current build, the encoder that built it, and a matcher over both."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .artifacts import Artifacts, current_link, load_artifacts
from .backbone import Encoder
from .retrieve import Matcher


@dataclass(frozen=True)
class Bundle:
    workdir: Path
    build_id: str
    artifacts: Artifacts
    encoder: Encoder
    matcher: Matcher


def current_build_id(workdir: Path) -> str | None:
    """The name of the published build `current` points at (changes exactly when a rebuild is swapped in)."""
    try:
        return os.readlink(current_link(workdir))
    except OSError:
        return None


def load_bundle(workdir: Path, backbone: str | None = None) -> Bundle:
    """Load the current build and its backbone (by default the one recorded in the manifest); checks they match."""
    workdir = Path(workdir)
    build_id = current_build_id(workdir) or ""
    art = load_artifacts(workdir)
    encoder = Encoder(backbone or art.backbone["name"])
    return Bundle(workdir=workdir, build_id=build_id, artifacts=art, encoder=encoder, matcher=Matcher(art, encoder))
