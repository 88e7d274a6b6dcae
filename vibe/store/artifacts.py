"""The built artifact set (items table, heads, projection, two indexes) with its manifest: atomic publish, checked load."""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from .. import __version__
from ..config import HEADS, REPO_ROOT
from ..errors import VibeError
from ..models.heads import AttributeHeads, load_heads
from ..models.style import ProjectionHead, load_projection
from ..util.files import file_digest, remove_tree, write_json
from .index import VectorIndex

FORMAT = "vibe-artifacts-3"  # 2: items carry their outfit slot; 3: the audit's out-of-fold probabilities, photo hashes
FILES = ("items.parquet", "clip.faiss", "style.faiss", "heads.safetensors", "projection.safetensors", "metrics.json")
AUDIT_FILE = "audit.safetensors"  # only in builds made with the label audit (--audit-folds > 0)
KEEP_BUILDS = 2  # the current one and the one before it


def code_version() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def rebuild_hint(workdir: Path, manifest: dict | None = None) -> str:
    data = (manifest or {}).get("catalog", {}).get("root", "DIR")
    return f"python -m vibe build --data {data} --workdir {workdir}"


@dataclass(frozen=True)
class Artifacts:
    """One published build, loaded and verified against its manifest."""

    path: Path  # the build folder (workdir/builds/<build id>)
    manifest: dict
    items: pd.DataFrame  # id, name, path, labels, {head}_code, hash, split, pred_{head}, conf_{head}
    clip: VectorIndex
    style: VectorIndex
    heads: AttributeHeads
    projection: ProjectionHead
    metrics: dict
    oof: dict[str, np.ndarray] | None = None  # per head, (items, classes) out-of-fold probabilities (the label audit)

    @property
    def workdir(self) -> Path:
        return self.path.parent.parent

    @property
    def build_id(self) -> str:
        return self.path.name

    @property
    def catalog_root(self) -> Path:
        return Path(self.manifest["catalog"]["root"])

    @property
    def backbone(self) -> dict:
        return self.manifest["backbone"]

    def codes(self, head: str) -> np.ndarray:
        return self.items[f"{head}_code"].to_numpy()


def current_link(workdir: Path) -> Path:
    return Path(workdir) / "current"


def current_build(workdir: Path) -> Path | None:
    """The build folder `current` points at, resolved once: load everything from it, never through `current` again,
    so a rebuild published meanwhile cannot mix two builds."""
    try:
        target = os.readlink(current_link(workdir))
    except OSError:
        return None
    return Path(workdir) / target


def build_folder(workdir: Path, build_id: str) -> Path:
    return Path(workdir) / "builds" / build_id


def publish(workdir: Path, staging: Path) -> Path:
    """Move a complete staging folder into builds/ and point `current` at it with one atomic rename.
    Keeps the new build and the one it replaces (sessions may still read it); anything else goes, half-published
    folders of a killed build included."""
    workdir = Path(workdir)
    builds = workdir / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    previous = current_build(workdir)
    final = builds / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    os.replace(staging, final)
    tmp_link = workdir / f".current.{os.getpid()}"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(Path("builds") / final.name)
    os.replace(tmp_link, current_link(workdir))
    keep = {final.name} | ({previous.name} if previous is not None else set())
    for old in builds.iterdir():
        if old.name not in keep:
            remove_tree(old)
    return final


def remove_leftovers(workdir: Path) -> None:
    """Staging folders and half-made `current` links of builds that were killed. Call only while holding the build lock."""
    for leftover in [*Path(workdir).glob(".staging-*"), *Path(workdir).glob(".current.*")]:
        if leftover.is_symlink() or leftover.is_file():
            leftover.unlink(missing_ok=True)
        else:
            remove_tree(leftover)


def write_manifest(folder: Path, manifest: dict) -> None:
    """Record size and hash of every file, so a truncated or swapped file is caught at load time."""
    manifest = dict(manifest, format=FORMAT, code_version=code_version(),
                    created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    files={name: {"size": (folder / name).stat().st_size, "blake2b": file_digest(folder / name)} for name in (*FILES, AUDIT_FILE)
                           if (folder / name).is_file()})
    write_json(folder / "manifest.json", manifest)


def read_manifest(folder: Path | None, workdir: Path) -> dict:
    """The manifest of one build folder (None: nothing is published in `workdir`)."""
    path = Path(folder) / "manifest.json" if folder is not None else None
    if path is None or not path.is_file():
        raise VibeError(f"No built index in {workdir}: run `{rebuild_hint(workdir)}` first.")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise VibeError(f"The manifest in {workdir} is damaged: run `{rebuild_hint(workdir)}`.") from None
    if manifest.get("format") != FORMAT:
        raise VibeError(f"The artifacts in {workdir} were built by another version of vibe (format "
                        f"{manifest.get('format')!r}, this one reads {FORMAT!r}): run `{rebuild_hint(workdir, manifest)}`.")
    return manifest


def verify_files(folder: Path, manifest: dict, workdir: Path) -> None:
    for name, meta in manifest["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != meta["size"] or file_digest(path) != meta["blake2b"]:
            raise VibeError(f"{path} is missing, truncated or changed since it was built: run `{rebuild_hint(workdir, manifest)}`.")


def load_artifacts(workdir: Path, build_id: str | None = None, verify: bool = True) -> Artifacts:
    """Load one build (default: the current one), every file checked against its manifest first."""
    workdir = Path(workdir)
    folder = build_folder(workdir, build_id) if build_id else current_build(workdir)
    manifest = read_manifest(folder, workdir)
    if verify:
        verify_files(folder, manifest, workdir)
    items = pd.read_parquet(folder / "items.parquet")
    art = Artifacts(path=folder, manifest=manifest, items=items, clip=VectorIndex.load(folder / "clip.faiss"),
                    style=VectorIndex.load(folder / "style.faiss"), heads=load_heads(folder / "heads.safetensors"),
                    projection=load_projection(folder / "projection.safetensors"),
                    metrics=json.loads((folder / "metrics.json").read_text()),
                    oof=load_audit(folder / AUDIT_FILE) if AUDIT_FILE in manifest["files"] else None)
    if not (len(art.clip) == len(art.style) == len(items) == manifest["n_items"]):
        raise VibeError(f"The artifacts in {workdir} disagree on the item count: run `{rebuild_hint(workdir, manifest)}`.")
    if art.heads.vocabs != manifest["vocabs"] or set(art.heads.vocabs) != set(HEADS):
        raise VibeError(f"The heads in {workdir} do not match its manifest: run `{rebuild_hint(workdir, manifest)}`.")
    return art


def save_audit(path: Path, probs: dict[str, np.ndarray]) -> None:
    save_file({h: np.ascontiguousarray(p, dtype=np.float32) for h, p in probs.items()}, str(path),
              metadata={"what": "out-of-fold head probabilities, rows as items.parquet"})


def load_audit(path: Path) -> dict[str, np.ndarray]:
    return load_file(str(path))


def check_backbone(manifest: dict, fingerprint: str, name: str, workdir: Path) -> None:
    """An index is only meaningful with the encoder that built it."""
    built = manifest["backbone"]
    if built["fingerprint"] != fingerprint:
        raise VibeError(f"The index in {workdir} was built with backbone {built['name']!r} ({built['description']}), "
                        f"but {name!r} is loaded: run `python -m vibe build --backbone {name} --data "
                        f"{manifest['catalog']['root']} --workdir {workdir}`, or query with --backbone {built['name']}.")


def status(workdir: Path) -> dict:
    """A cheap summary for the dashboard's Home page: is there a build, when, with what, from which catalogue."""
    folder = current_build(workdir)
    try:
        m = read_manifest(folder, workdir)
    except VibeError as e:
        return {"built": False, "message": str(e)}
    from ..catalog.reader import catalog_signature

    root = Path(m["catalog"]["root"])
    stale = root.is_dir() and catalog_signature(root) != m["catalog"].get("signature")
    return {"built": True, "build_id": folder.name, "created_at": m["created_at"], "backbone": m["backbone"],
            "n_items": m["n_items"], "catalog": str(root), "subset": m["catalog"].get("subset", "all"),
            "holdout_fraction": m["catalog"].get("holdout_fraction", 0.2), "catalog_exists": root.is_dir(),
            "stale": bool(stale), "age_s": time.time() - (folder / "manifest.json").stat().st_mtime}
