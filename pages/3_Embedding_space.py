"""Embedding space: UMAP of the 512-D backbone space and the 256-D style space, coloured by any attribute, with the
product photo on hover, a click for an item's nearest neighbours and a box/lasso selection to export."""
import plotly.express as px
import streamlit as st

from pages.ui.common import guard, page_with_bundle, thumbnail_grid
from pages.ui.explorer import explorer
from vibe.config import HEADS
from vibe.views import SPACES, colour_groups, layout

PALETTE = px.colors.qualitative.Dark24[:12] + ["#c8c8c8", "#f0e0e0"]  # 12 values, then "other" and "(missing)" in grey

bundle = page_with_bundle("Embedding space")
art = bundle.artifacts


@st.cache_data(show_spinner="Computing the UMAP layout (once per build; cached on disk)…", max_entries=8)
def cached_layout(build_id: str, space: str):
    return layout(art, space)


c1, c2 = st.columns(2)
view = c1.segmented_control("Space", [*SPACES.values(), "Side by side"], default=SPACES["clip"], required=True)
colour_by = c2.selectbox("Colour by", HEADS, index=HEADS.index("item_type"))
spaces = list(SPACES) if view == "Side by side" else [k for k, v in SPACES.items() if v == view]
with guard():
    component, files = explorer(art, bundle.build_id)
labels = art.items[list(HEADS)].fillna("?").astype(str).agg(" · ".join, axis=1).tolist()

events = []
for column, space in zip(st.columns(len(spaces)), spaces):
    with column, guard():
        frame, facts = cached_layout(bundle.build_id, space)
        rows = frame["row"].to_numpy()
        group, names = colour_groups(art.items[colour_by].iloc[rows])
        st.markdown(f"**{SPACES[space]}** · coloured by {colour_by}")
        event = component(key=f"explorer-{space}", default=None,
                          view=f"{bundle.build_id}-{space}-{colour_by}", x=frame["x"].round(4).tolist(),
                          y=frame["y"].round(4).tolist(), group=group.tolist(), groups=names,
                          colors=[PALETTE[i] if n not in ("other", "(missing)") else PALETTE[12 + (n == "(missing)")]
                                  for i, n in enumerate(names)], row=rows.tolist(), file=[files[r] for r in rows],
                          name=art.items["name"].iloc[rows].astype(str).tolist(), labels=[labels[r] for r in rows],
                          size=6 if len(rows) < 5_000 else 4 if len(rows) < 50_000 else 3)
        shown = f"all {facts['n_shown']:,}" if not facts["sampled"] else f"a random sample of {facts['n_shown']:,}"
        how = ("fitted on all of them" if facts["fitted_on"] >= facts["n_shown"] else
               f"UMAP fitted on {facts['fitted_on']:,}, the other {facts['n_shown'] - facts['fitted_on']:,} placed by its transform")
        st.caption(f"Showing {shown} of {facts['n_total']:,} items ({how})" + (" · layout loaded from cache" if facts["cached"] else "")
                   + ". Hover for the photo, click for neighbours, drag a lasso or box to select.")
        if event:
            events.append(event)

latest = max(events, key=lambda e: e.get("n", 0), default=None)
if latest and latest["event"] == "click":
    row = int(latest["row"])
    found, scores = art.clip.search(art.clip.vector(row), 10)
    st.subheader(f"Nearest neighbours of {art.items['name'].iat[row]} (id {art.items['id'].iat[row]})")
    thumbnail_grid([{"path": art.items["path"].iat[r], "title": art.items["name"].iat[r],
                     "lines": [labels[r], "the item" if r == row else f"cosine {s:.3f}"]} for r, s in zip(found, scores)],
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
