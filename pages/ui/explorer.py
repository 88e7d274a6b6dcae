"""The embedding explorer component (pages/ui/explorer.html), served from a build's views/explorer folder together with
plotly.js and links to every catalogue photo, so hovering a point shows its photo at any catalogue size."""
from __future__ import annotations

import shutil
from pathlib import Path

import plotly
import streamlit as st
import streamlit.components.v1 as components

from vibe.views import photo_folder

PAGE = Path(__file__).with_name("explorer.html")


@st.cache_resource(show_spinner="Preparing the explorer (links to the photos, once per build)…", max_entries=2)
def explorer(_art, build_id: str):
    """(component, file name of each item's photo) for one build."""
    folder = _art.path / "views" / "explorer"
    files = photo_folder(_art, folder)
    shutil.copyfile(PAGE, folder / "index.html")
    if not (folder / "plotly.min.js").exists():
        shutil.copyfile(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", folder / "plotly.min.js")
    return components.declare_component(f"explorer_{build_id}", path=str(folder)), files
