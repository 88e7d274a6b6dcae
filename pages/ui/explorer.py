"""The embedding explorer component (pages/ui/explorer.html), served from a build's views/explorer folder together with
plotly.js, links to every catalogue photo and the per-point data files (vibe.explore.layout.explorer_points/explorer_groups),
which the component fetches itself: only file names and a few small values travel as its arguments."""
from __future__ import annotations

from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from vibe.explore.layout import prepare_explorer

PAGE = Path(__file__).with_name("explorer.html")
# plotly.js's "gl2d" partial bundle (npm plotly.js-gl2d-dist-min 3.7.0, MIT, pages/ui/vendor/plotly-LICENSE): the WebGL
# scatter with hover, click and lasso is all the explorer draws, in a third of the full bundle's 4.8 MB, which cost
# 1.3 s of script parsing before the first point showed
PLOTLY = Path(__file__).with_name("vendor") / "plotly-gl2d.min.js"


@st.cache_resource(show_spinner="Preparing the explorer (links to the photos, once per build)…", max_entries=2)
def explorer(_art, build_id: str):
    """(component, its folder, file name of each item's photo there) for one build."""
    folder, files = prepare_explorer(_art, {"index.html": PAGE, "plotly.min.js": PLOTLY})
    return components.declare_component(f"explorer_{build_id}", path=str(folder)), folder, files
