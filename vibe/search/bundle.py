"""Everything a query needs, loaded once: one build, the encoder that built it, and a matcher over both."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..models.encoder import Encoder
from ..store.artifacts import Artifacts, current_build, load_artifacts
from .matcher import Matcher


@dataclass(frozen=True)
class Bundle:
    workdir: Path
    build_id: str
    artifacts: Artifacts
    encoder: Encoder
    matcher: Matcher


def current_build_id(workdir: Path) -> str | None:
    """The name of the published build `current` points at (changes exactly when a rebuild is swapped in)."""
    folder = current_build(workdir)
    return folder.name if folder is not None else None


def load_bundle(workdir: Path, build_id: str | None = None, backbone: str | None = None,
                encoders: Callable[[str], Encoder] = Encoder) -> Bundle:
    """Load one build (default: the current one, resolved once) and its backbone (by default the one recorded in its
    manifest), made by `encoders(name)` (a cache can hand back one already loaded). Refuses an encoder other than
    the one the build was made with."""
    art = load_artifacts(Path(workdir), build_id)
    encoder = encoders(backbone or art.backbone["name"])
    return Bundle(workdir=Path(workdir), build_id=art.build_id, artifacts=art, encoder=encoder, matcher=Matcher(art, encoder))
