"""The one cached bundle, the backbone badge, thumbnails and error boxes shared by every page."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from vibe.config import default_workdir
from vibe.errors import VibeError
from vibe.models.encoder import Encoder
from vibe.search.bundle import Bundle, current_build_id, load_bundle
from vibe.store.artifacts import status

REBUILD_PAGE = "pages/5_Rebuild_index.py"


@contextmanager
def guard():
    """A user error becomes one error box; anything else an error box too (its traceback goes to the server log only)."""
    try:
        yield
    except VibeError as e:
        st.error(str(e))
        st.stop()
    except Exception as e:  # noqa: BLE001 - the dashboard never shows a stack trace
        logging.getLogger("vibe.dashboard").exception("unexpected error")
        st.error(f"Something went wrong ({type(e).__name__}: {e}). The details are in the server log.")
        st.stop()


def page_setup(title: str) -> None:
    st.set_page_config(page_title=f"{title} · Find-My-Vibe", page_icon="👗", layout="wide")
    st.title(title)


def workdir() -> Path:
    return Path(os.environ.get("VIBE_WORKDIR") or default_workdir())


@st.cache_resource(show_spinner="Loading the backbone…", max_entries=2)
def get_encoder(name: str) -> Encoder:
    """One loaded encoder per backbone name, shared by every session, every build and the Rebuild page."""
    return Encoder(name)


@st.cache_resource(show_spinner="Loading the indexes…", max_entries=2)
def _bundle(workdir: str, build_id: str) -> Bundle:
    # keyed by build id and loaded from that very build folder: a rebuild swaps in a new bundle, and pages answer
    # from the old one until then
    return load_bundle(Path(workdir), build_id, encoders=get_encoder)


def get_bundle() -> Bundle | None:
    """The current bundle, or None after telling the user (in one box) what is missing and what to do."""
    wd = workdir()
    build_id = current_build_id(wd)
    if build_id is None:
        st.info(f"Nothing is built in `{wd}` yet.")
        st.page_link(REBUILD_PAGE, label="Build the index", icon=":material/build:")
        return None
    try:
        try:
            return _bundle(str(wd), build_id)
        except VibeError:
            if current_build_id(wd) == build_id:
                raise
            return _bundle(str(wd), current_build_id(wd))  # a rebuild was published (and the old one pruned) meanwhile
    except VibeError as e:
        st.error(str(e))
        st.page_link(REBUILD_PAGE, label="Rebuild the index", icon=":material/build:")
        return None


def page_with_bundle(title: str) -> Bundle:
    """The top of every analysis page: title, the bundle and its badge; stops the page (after saying why) without one."""
    page_setup(title)
    bundle = get_bundle()
    badge(bundle)
    if bundle is None:
        st.stop()
    return bundle


def badge(bundle: Bundle | None = None) -> None:
    """Which backbone is active and when the artifacts were built, on every page."""
    if bundle is None:
        st.caption(f"No artifacts in `{workdir()}`.")
        return
    kind = bundle.encoder.kind
    label = {"clip": "FashionCLIP" if bundle.encoder.name == "fashion-clip" else "CLIP",
             "vibe-mini": "vibe-mini (offline)", "tiny-random": "test backbone"}.get(kind, kind)
    colour = {"clip": "green", "vibe-mini": "orange", "tiny-random": "red"}.get(kind, "gray")
    m = bundle.artifacts.manifest
    st.badge(f"Backbone: {label}", color=colour)
    st.caption(f"{bundle.encoder.description} · built {m['created_at']} · {m['n_items']} items")
    if bundle.encoder.note:
        st.warning(bundle.encoder.note)


def artifact_status() -> dict:
    return status(workdir())


def thumbnail_grid(cards: list[dict], root: Path, columns: int = 5, actions=None) -> None:
    """Cards with an image, a title and caption lines; `cards` hold path, title, lines. `actions(card)`, when given,
    draws the card's buttons under its lines."""
    cols = st.columns(columns)
    for i, card in enumerate(cards):
        with cols[i % columns].container(border=True):
            path = Path(root) / card["path"]
            if path.is_file():
                st.image(str(path), width="stretch")
            else:
                st.caption("(image missing)")
            st.markdown(f"**{card['title']}**")
            for line in card.get("lines", []):
                st.caption(line)
            if actions is not None:
                actions(card)
