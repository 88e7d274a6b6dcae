"""Rebuild index: the same `vibe.pipeline.build` as `python -m vibe build`, with progress per stage."""
import streamlit as st

from pages.ui.common import artifact_status, badge, get_bundle, page_setup, workdir
from vibe.config import SAMPLE_DATA, BuildConfig, CatalogConfig
from vibe.errors import VibeError
from vibe.pipeline import build

BACKBONES = ["auto", "vibe-mini", "fashion-clip", "tiny-random"]

page_setup("Rebuild index")
state = artifact_status()
badge(get_bundle() if state["built"] else None)
st.write("Embeds new or changed images only (the cache is keyed by image content), retrains the five heads and the style "
         "projection, rebuilds both FAISS indexes and swaps them in at once. The other pages keep answering from the "
         "current artifacts until then.")

with st.form("rebuild"):
    data = st.text_input("Catalogue folder (styles.csv + images/)", value=state.get("catalog") or str(SAMPLE_DATA))
    current = state["backbone"]["name"] if state["built"] else "auto"
    backbone = st.selectbox("Backbone", BACKBONES if current in BACKBONES else [current, *BACKBONES],
                            index=(BACKBONES if current in BACKBONES else [current, *BACKBONES]).index(current),
                            help="auto = FashionCLIP when it can be loaded, else the offline vibe-mini")
    subset = st.selectbox("Items", ["all", "train", "holdout"], help="train/holdout: a deterministic 80/20 split by item id")
    go = st.form_submit_button("Rebuild", type="primary")

if go:
    bars: dict[str, st.delta_generator.DeltaGenerator] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = st.progress(0.0, text=stage)
        bars[stage].progress(min(1.0, done / max(1, total)), text=f"{stage}: {done:,} / {total:,}")

    try:
        with st.status("Building…", expanded=True) as box:
            result = build(BuildConfig(catalog=CatalogConfig(root=data, subset=subset), backbone=backbone, workdir=workdir()),
                           progress=progress, log=st.text)
            box.update(label="Build finished", state="complete", expanded=False)
    except VibeError as e:
        st.error(str(e))
    else:
        st.success(f"Built {result.n_items:,} items with {result.backbone['description']}.")
        st.dataframe([
            {"what": "items added", "count": result.added},
            {"what": "items removed", "count": result.removed},
            {"what": "items whose image changed", "count": result.changed},
            {"what": "images embedded now", "count": result.embedded},
            {"what": "embeddings reused from the cache", "count": result.reused},
            {"what": "unreadable images skipped", "count": len(result.failed)},
            {"what": "catalogue rows without an image", "count": result.catalog_report["no_image"]},
            {"what": "malformed catalogue rows skipped", "count": len(result.catalog_report["malformed"])},
        ], hide_index=True)
        if result.failed:
            with st.expander("Skipped images and why"):
                st.dataframe([{"id": i, "reason": why} for i, why in result.failed], hide_index=True)
        st.caption("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))
        st.page_link("pages/1_Find_matches.py", label="Find matches with the new index", icon=":material/search:")
