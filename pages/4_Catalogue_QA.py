"""Catalogue QA: items whose label the model and the neighbours dispute, and near-identical photos under several ids."""
import streamlit as st

from pages.ui.common import guard, page_with_bundle, thumbnail_grid
from vibe.config import HEADS
from vibe.qa import duplicates, labels

bundle = page_with_bundle("Catalogue QA")
art = bundle.artifacts


@st.cache_data(show_spinner="Scoring every label against held-out predictions and neighbours…", max_entries=10)
def problems(build_id: str, head: str):
    return labels.label_problems(art, head)


@st.cache_data(show_spinner="Looking for near-identical photos…", max_entries=10)
def groups(build_id: str, threshold: float):
    return duplicates.duplicate_groups(art, threshold)


tab_labels, tab_dupes = st.tabs(["Label problems", "Duplicates"])
with tab_labels:
    if not labels.audited(art):  # a build made with --audit-folds 0: say so here, and leave the duplicates tab working
        st.info("This build was made without the label audit (`--audit-folds 0`). Rebuild with the default settings "
                "(`python -m vibe build --data DIR`) to list the labels the model disputes.")
    else:
        st.caption("Items whose catalogue label the model disputes, most suspicious first: a model that never saw the "
                   "item's own label predicts something else, and the photos most like it mostly carry another label.",
                   help="Suspicion adds how surprising the label is to two witnesses (in nats): -ln p(label) from heads "
                        "trained without the item (5 folds, at build time), and -ln(share of its 10 nearest other photos "
                        "with that label + 0.1). Above 6: the heads give the label under 1 % and no neighbour carries it.")
        head = st.selectbox("Attribute", HEADS, key="qa-head")
        with guard():
            table = problems(bundle.build_id, head)
        st.metric("Items to check", f"{len(table):,}", help="catalogue label differs from the model's prediction")
        top = st.slider("Show the most suspicious", 4, 60, 16, step=4)
        thumbnail_grid([{"path": r.path, "title": f"{r.label} → {r.suggested}?",
                         "lines": [r.name, f"id {r.id} · suspicion {r.score:.1f}",
                                   f"the model: {r.p_suggested:.0%} {r.suggested}, {r.p_label:.0%} {r.label}",
                                   f"similar photos: {r.neighbours_suggested:.0%} {r.suggested}, "
                                   f"{r.neighbours_label:.0%} {r.label}"]} for r in table.head(top).itertuples()],
                       art.catalog_root, columns=4)
        st.download_button("Export for the catalogue team (CSV)", table.drop(columns=["path"]).to_csv(index=False),
                           file_name=f"label-problems-{head}.csv", mime="text/csv")

with tab_dupes:
    default = duplicates.default_duplicate_threshold(art)
    calibration = art.metrics.get("duplicates", {}).get("from", "a conservative default")
    threshold = st.slider("How alike two photos must be", 0.80, 1.0, float(default), step=0.0005, format="%.4f",
                          help=f"Cosine similarity in the 512-D space; the default comes from {calibration}. Lower finds "
                               "more groups, and more photos that are only alike.")
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
    st.download_button("Export groups (CSV)", duplicates.groups_table(art, found).to_csv(index=False),
                       file_name="duplicates.csv", mime="text/csv")
