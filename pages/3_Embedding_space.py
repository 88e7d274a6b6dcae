"""Embedding space: UMAP of the 512-D backbone space and the 256-D style space, coloured by any attribute, with the
product photo on hover, a click for an item's nearest neighbours and a box/lasso selection to export."""
import plotly.express as px
import streamlit as st

from pages.ui.common import guard, page_with_bundle, thumbnail_grid
from pages.ui.explorer import explorer
from vibe.config import HEADS
from vibe.explore.layout import SPACES, explorer_groups, explorer_hover, explorer_points, item_labels, layout
from vibe.explore.selection import latest_event, neighbours

PALETTE = px.colors.qualitative.Dark24[:12] + ["#c8c8c8", "#f0e0e0"]  # 12 values, then "other" and "(missing)" in grey

bundle = page_with_bundle("Embedding space")
art = bundle.artifacts


@st.cache_data(show_spinner="Computing the UMAP layout (once per build; cached on disk)…", max_entries=8)
def cached_layout(build_id: str, space: str):
    return layout(art, space)


@st.cache_data(show_spinner=False, max_entries=8)
def points_files(build_id: str, space: str) -> dict:
    """The layout's points file in the explorer folder (written once per build and space), and its hover file's name."""
    return explorer_points(folder, cached_layout(build_id, space)[0])


@st.cache_data(show_spinner=False, max_entries=8)
def hover_file(build_id: str, space: str, name: str) -> None:
    explorer_hover(art, folder, cached_layout(build_id, space)[0], files, name)


@st.cache_data(show_spinner=False, max_entries=32)
def group_files(build_id: str, space: str, colour_by: str) -> dict:
    return explorer_groups(art, folder, cached_layout(build_id, space)[0]["row"].to_numpy(), colour_by)


c1, c2 = st.columns(2)
view = c1.segmented_control("Space", [*SPACES.values(), "Side by side"], default=SPACES["clip"], required=True)
colour_by = c2.selectbox("Colour by", HEADS, index=HEADS.index("item_type"))
spaces = list(SPACES) if view == "Side by side" else [k for k, v in SPACES.items() if v == view]
with guard():
    component, folder, files = explorer(art, bundle.build_id)

events = {}
for column, space in zip(st.columns(len(spaces)), spaces):
    with column, guard():
        facts = cached_layout(bundle.build_id, space)[1]
        data, colours = points_files(bundle.build_id, space), group_files(bundle.build_id, space, colour_by)
        names = colours["groups"]
        st.markdown(f"**{SPACES[space]}** · coloured by {colour_by}")
        event = component(key=f"explorer-{space}", default=None, view=f"{bundle.build_id}-{space}-{colour_by}",
                          n=data["n"], points=data["points"], hover=data["hover"], group=colours["group"], groups=names,
                          colors=[PALETTE[i] if n not in ("other", "(missing)") else PALETTE[12 + (n == "(missing)")]
                                  for i, n in enumerate(names)],
                          size=6 if data["n"] < 5_000 else 4 if data["n"] < 50_000 else 3)
        shown = f"all {facts['n_shown']:,}" if not facts["sampled"] else f"a random sample of {facts['n_shown']:,}"
        how = ("fitted on all of them" if facts["fitted_on"] >= facts["n_shown"] else
               f"UMAP fitted on {facts['fitted_on']:,}, the other {facts['n_shown'] - facts['fitted_on']:,} placed by its transform")
        st.caption(f"Showing {shown} of {facts['n_total']:,} items ({how})" + (" · layout loaded from cache" if facts["cached"] else "")
                   + ". Hover for the photo, click for neighbours, drag a lasso or box to select.")
        events[space] = event
        hover_file(bundle.build_id, space, data["hover"])  # after the component: the tooltips are not needed to draw

picked = latest_event(events)
clicked_in, latest = picked if picked else (None, None)
if latest and latest["event"] == "click":
    row = int(latest["row"])
    found, scores = neighbours(art, clicked_in, row)
    st.subheader(f"Nearest neighbours of {art.items['name'].iat[row]} (id {art.items['id'].iat[row]}) in the "
                 f"{SPACES[clicked_in]}")
    labels = item_labels(art.items.iloc[found]).tolist()
    thumbnail_grid([{"path": art.items["path"].iat[r], "title": art.items["name"].iat[r],
                     "lines": [line, "the item" if r == row else f"cosine {s:.3f}"]}
                    for r, s, line in zip(found, scores, labels)],
                   art.catalog_root, columns=5)
elif latest and latest["event"] == "select" and latest["rows"]:
    picked = art.items.iloc[sorted(set(int(r) for r in latest["rows"]))]
    st.subheader(f"{len(picked):,} selected")
    st.download_button("Export the selection (CSV)", picked[["id", "name", *HEADS, "path"]].to_csv(index=False),
                       file_name="selection.csv", mime="text/csv")
    if len(picked) > 40:
        st.caption("The first 40 are shown; the export holds all.")
    thumbnail_grid([{"path": r.path, "title": r.name, "lines": [" · ".join(str(getattr(r, h)) for h in HEADS)]}
                    for r in picked.head(40).itertuples()], art.catalog_root, columns=5)
else:
    st.info("Hover a point to see its photo; click one for its nearest neighbours; select with the lasso or box tool to "
            "list and export items.")
