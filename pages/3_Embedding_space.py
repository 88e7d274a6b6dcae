"""Embedding space: UMAP of the 512-D backbone space and the 256-D style space, coloured by any attribute."""
import plotly.express as px
import streamlit as st

from pages.ui.common import guard, page_with_bundle, thumbnail_grid
from vibe.config import HEADS
from vibe.views import SPACES, layout

bundle = page_with_bundle("Embedding space")
art = bundle.artifacts


@st.cache_data(show_spinner="Computing the UMAP layout (once per build; cached on disk)…", max_entries=8)
def cached_layout(workdir: str, build_id: str, space: str):
    return layout(art, space)


c1, c2 = st.columns(2)
view = c1.segmented_control("Space", [*SPACES.values(), "Side by side"], default=SPACES["clip"], required=True)
colour_by = c2.selectbox("Colour by", HEADS, index=HEADS.index("item_type"))
spaces = list(SPACES) if view == "Side by side" else [k for k, v in SPACES.items() if v == view]

selected: list[int] = []
for column, space in zip(st.columns(len(spaces)), spaces):
    with column, guard():
        frame, facts = cached_layout(str(bundle.workdir), bundle.build_id, space)
        shown = frame.join(art.items[["id", "name", *HEADS]], on="row")
        shown[colour_by] = shown[colour_by].fillna("(missing)")
        fig = px.scatter(shown, x="x", y="y", color=colour_by, hover_name="name", hover_data={h: True for h in HEADS} | {"x": False, "y": False},
                         custom_data=["row"], title=SPACES[space], render_mode="webgl",
                         color_discrete_sequence=px.colors.qualitative.Dark24 + px.colors.qualitative.Light24)
        fig.update_traces(marker={"size": 5, "opacity": 0.8})
        fig.update_layout(height=600, legend={"itemsizing": "constant"}, margin=dict(l=0, r=0, t=40, b=0))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"), key=f"umap-{space}")
        sample = f"a random sample of {facts['n_shown']:,}" if facts["sampled"] else f"all {facts['n_shown']:,}"
        st.caption(f"Showing {sample} of {facts['n_total']:,} items" + (" · layout loaded from cache" if facts["cached"] else ""))
        selected += [int(p["customdata"][0]) for p in event.selection.points if p.get("customdata")]

st.subheader("Selected items")
if not selected:
    st.info("Select points on a chart (click, box or lasso) to see their thumbnails.")
else:
    rows = art.items.iloc[list(dict.fromkeys(selected))[:40]]
    st.caption(f"{len(set(selected))} selected" + (" (the first 40 shown)" if len(set(selected)) > 40 else ""))
    thumbnail_grid([{"path": r.path, "title": r.name, "lines": [" · ".join(str(getattr(r, h)) for h in HEADS)]}
                    for r in rows.itertuples()], art.catalog_root, columns=8)
