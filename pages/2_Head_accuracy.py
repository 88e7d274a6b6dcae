"""Head accuracy: confusion matrices and per-class metrics of the five heads on the held-out split."""
import plotly.express as px
import streamlit as st

from pages.ui.common import guard, page_with_bundle, thumbnail_grid
from vibe.config import HEADS
from vibe.eval import accuracy
from vibe.eval.queries import heldout_case
from vibe.eval.reshoot import backdrop_photos, reshot_photo

bundle = page_with_bundle("Head accuracy")
art = bundle.artifacts


@st.cache_resource(max_entries=4)
def backdrop_cache(build_id: str, ids: tuple[int, ...] | None):
    """The photos a report's busy backdrops were made of (its own record of them), to draw its cases again exactly."""
    return backdrop_photos(art.items, art.catalog_root, ids=ids)

st.caption(f"Computed on the {art.metrics['n_heldout']} held-out items of this build (chosen by a hash of the item id; never trained on).")
if bundle.encoder.kind == "vibe-mini":
    st.info("vibe-mini learned from labelled photos itself: if this catalogue holds photos it was trained on, these "
            "figures are optimistic. The README reports vibe-mini on photos it never saw.")
st.dataframe(accuracy.summary(art), hide_index=True)

head = st.selectbox("Head", HEADS)
vocab = art.heads.vocabs[head]
c1, c2 = st.columns(2)
values = c1.segmented_control("Values", ["Counts", "Row-normalised"], default="Counts", required=True)
# a head of two classes (or one) has nothing to choose: all of them are shown
top = (c2.slider("Classes shown (most frequent first)", 2, len(vocab), min(20, len(vocab))) if len(vocab) > 2
       else len(vocab))
normalize = values == "Row-normalised"
with guard():
    cm = accuracy.confusion(art, head, normalize=normalize, top=top)
fig = px.imshow(cm, text_auto=".2f" if normalize else True, aspect="auto", color_continuous_scale="Blues",
                labels={"x": "predicted", "y": "true", "color": "share" if normalize else "items"})
fig.update_layout(height=max(400, 28 * len(cm) + 150), margin=dict(l=0, r=0, t=30, b=0))
fig.update_xaxes(tickangle=-45)
st.plotly_chart(fig)
with st.expander("Full confusion matrix as a table"):
    st.dataframe(accuracy.confusion(art, head))

left, right = st.columns(2)
with left:
    st.markdown("**Per class**")
    st.dataframe(accuracy.per_class(art, head), hide_index=True)
with right:
    st.markdown("**Most confused pairs** (select a row to see its items)")
    pairs = accuracy.confused_pairs(art, head, n=15)
    picked = st.dataframe(pairs, hide_index=True, on_select="rerun", selection_mode="single-row", key=f"pairs-{head}")

chosen = picked.selection.rows if pairs is not None and len(pairs) else []
default_true, default_pred = (pairs.iloc[chosen[0]]["true"], pairs.iloc[chosen[0]]["predicted"]) if chosen else (
    (pairs.iloc[0]["true"], pairs.iloc[0]["predicted"]) if len(pairs) else (vocab[0], vocab[0]))
st.subheader("Items in a cell")
c1, c2 = st.columns(2)
true = c1.selectbox("True class", vocab, index=vocab.index(default_true), key=f"true-{head}-{default_true}")
pred = c2.selectbox("Predicted class", vocab, index=vocab.index(default_pred), key=f"pred-{head}-{default_pred}")
with guard():
    cell = accuracy.cell_items(art, head, true, pred)
st.caption(f"{len(cell)} held-out items are {true} and predicted {pred}" + (" (the 30 most confident shown)" if len(cell) > 30 else ""))
thumbnail_grid([{"path": r.path, "title": r.name, "lines": [f"id {r.id} · confidence {getattr(r, f'conf_{head}'):.2f}"]}
                for r in cell.head(30).itertuples()], art.catalog_root, columns=6)

st.divider()
st.header("Retrieval quality")
st.caption("Does a photo of an item, taken differently, find that item among all catalogue items? Rank 1 means it found "
           "its own item. Measured through *Same item* mode, with the filters a user gets, and through the bare 512-D "
           "embedding, on two families of photo made from items the build never trained on:")
st.markdown("- **Held-out kinds of photo**: the product on real photos (a table, a wall, the ground), in a competitor's "
            "page screenshot beside other products, as a phone shot (uneven light, perspective), under a warm or cool "
            "white balance. Made by code no training uses, from backdrops no training sees: the honest figure.\n"
            "- **Re-shoots (training-style)**: cropped, smaller, on tinted or busy collage backdrops, rotated, relit, "
            "recompressed. vibe-mini and the segmenter were trained on re-shoots made this way: this family flatters them.")
reports = accuracy.retrieval_reports(art)
filters = art.metrics.get("filters")
if filters:
    limits = lambda thresholds: ", ".join(f"{h} {'never' if t > 1 else f'{t:.2f}'}" for h, t in thresholds.items())  # noqa: E731
    unlike = filters.get("unfamiliar_thresholds")
    st.caption("Same-mode filters apply from these confidences: " + limits(filters["thresholds"]) + (
        f"; on a photo further from the catalogue (nearest catalogue photo under similarity {filters['familiar_cosine']:.2f}): "
        + limits(unlike) if unlike else ""),
        help=f"Where each head is right {filters['precision']:.0%} of the time on held-out photos (clean, re-shot and of "
             "the held-out kinds, from items and real photos the scored figures never use)" + (
             ", calibrated apart for the re-made photos closer to the catalogue than their median and those further."
             if unlike else "."))
if not reports:
    st.info("No ranking check for this build yet: rebuild it (a build checks its own held-out items), or run "
            "`python -m vibe eval --data DIR --subset holdout`.")
else:
    key = st.selectbox("Measured on", list(reports), format_func=lambda k: reports[k]["label"])
    chosen = reports[key]
    held = chosen["heldout"]
    if held and held.get("same"):
        st.subheader("Held-out kinds of photo")
        st.dataframe(accuracy.retrieval_table({**held, "k": chosen["report"]["k"]}, "kind").style.format(precision=3),
                     hide_index=True)
        page, scenes = (held.get("proposals") or {}).get("page_screenshot"), (held.get("proposals") or {}).get("scenes")
        if page:
            st.caption(f"Page screenshots: the page's own product is the first product proposed in "
                       f"{page['own_box_first']:.0%} of {page['n']} (proposed at all: {page['own_box_found']:.0%}).")
        if scenes:
            st.caption(f"Photos of 1-5 products: {scenes['recall']:.0%} of {scenes['n_products']} products are proposed "
                       f"(box overlap 0.5 or more), with {scenes['extra_per_scene']:.1f} other boxes per photo.")
    st.subheader("Re-shoots (training-style)")
    st.dataframe(accuracy.retrieval_table(chosen["report"]).style.format(precision=3), hide_index=True)
    if chosen["neighbours"]:
        n = chosen["neighbours"]
        st.caption(f"Unfiltered 512-D neighbours of clean photos: label precision@{n['k']} {n['type_and_colour']:.2f} for "
                   f"item type and colour together, {n['type']:.2f} for item type alone.")
    backdrops = backdrop_cache(bundle.build_id, tuple(chosen["backdrop_ids"]) if chosen["backdrop_ids"] else None)
    family = st.segmented_control("Worst cases of", ["Held-out kinds", "Re-shoots"], required=True,
                                  default="Held-out kinds" if held and held.get("worst") else "Re-shoots")
    worst = ((held or {}).get("worst", []) if family == "Held-out kinds" else chosen["worst"])[:12]
    if not worst:
        st.success("Every photo of this family found its own item at rank 1 in same mode.")
    else:
        st.caption("The photo searched → what same mode ranked first (the photos are made again from the report's seed).")
        others = backdrop_cache(bundle.build_id, tuple(held["others_ids"])) if family == "Held-out kinds" else backdrops
        cols = st.columns(4)
        for i, case in enumerate(worst):
            with cols[i % 4].container(border=True), guard():
                a, b = st.columns(2)
                photo = heldout_case(case, chosen["seed"], others) if family == "Held-out kinds" else \
                    reshot_photo(case, chosen["seed"], backdrops)
                a.image(photo, caption=f"{case['change']} · id {case['id']}")
                if case["top_path"]:
                    b.image(case["top_path"], caption=f"came back: id {case['top_id']}")
                missed = f"not in the first {chosen['report']['k']}"
                st.caption(f"its own item ranked {case['rank_same'] or missed} in same mode, "
                           f"{case['rank_embedding'] or missed} by the bare embedding")
