"""Catalogue QA: items whose label the model and the neighbours dispute, and near-identical photos under several ids."""
import streamlit as st

from pages.ui.common import guard, page_with_bundle, thumbnail_grid
from vibe import audit
from vibe.config import HEADS

bundle = page_with_bundle("Catalogue QA")
art = bundle.artifacts


@st.cache_data(show_spinner="Scoring every label against held-out predictions and neighbours…", max_entries=10)
def problems(build_id: str, head: str):
    return audit.label_problems(art, head)


@st.cache_data(show_spinner="Looking for near-identical photos…", max_entries=10)
def groups(build_id: str, threshold: float):
    return audit.duplicate_groups(art, threshold)


tab_labels, tab_dupes = st.tabs(["Label problems", "Duplicates"])
with tab_labels:
    st.caption("An item is listed when its catalogue label disagrees with what heads trained **without it** predict "
               "(5-fold out-of-fold predictions, made at build time). Score = how surprising the label is, in nats: "
               "−ln p(label) from those heads − ln(share of its 10 nearest other photos with that label + 0.1). "
               "Above 6: the heads give the label under 1 % and no neighbour carries it.")
    head = st.selectbox("Attribute", HEADS, key="qa-head")
    with guard():
        table = problems(bundle.build_id, head)
    st.metric("Items to check", f"{len(table):,}", help="catalogue label ≠ out-of-fold prediction")
    top = st.slider("Show the most suspicious", 4, 60, 16, step=4)
    thumbnail_grid([{"path": r.path, "title": f"{r.label} → {r.suggested}",
                     "lines": [r.name, f"id {r.id} · score {r.score:.2f}",
                               f"heads: {r.p_suggested:.2f} vs {r.p_label:.2f} · neighbours: {r.neighbours_suggested:.0%} vs "
                               f"{r.neighbours_label:.0%}"]} for r in table.head(top).itertuples()], art.catalog_root, columns=4)
    st.download_button("Export for the catalogue team (CSV)", table.drop(columns=["path"]).to_csv(index=False),
                       file_name=f"label-problems-{head}.csv", mime="text/csv")

with tab_dupes:
    default = audit.default_duplicate_threshold(art)
    calibration = art.metrics.get("duplicates", {}).get("from", "a conservative default")
    threshold = st.slider("Cosine threshold (512-D)", 0.80, 1.0, float(default), step=0.0005, format="%.4f",
                          help=f"The default comes from {calibration}.")
    with guard():
        found = groups(bundle.build_id, threshold)
    st.metric("Groups of near-identical photos", len(found))
    by_id = art.items.set_index("id")
    for i, group in enumerate(found[:30], 1):
        st.markdown(f"**Group {i}** · {len(group)} items")
        thumbnail_grid([{"path": by_id.at[item, "path"], "title": f"id {item}", "lines": [by_id.at[item, "name"]]}
                        for item in group[:8]], art.catalog_root, columns=8)
    if len(found) > 30:
        st.caption(f"The first 30 of {len(found)} groups are shown; the export holds all.")
    st.download_button("Export groups (CSV)", audit.groups_table(art, found).to_csv(index=False),
                       file_name="duplicates.csv", mime="text/csv")
