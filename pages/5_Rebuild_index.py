"""Rebuild index: the same `vibe.pipeline.build` as `python -m vibe build`, run in the background with progress per stage."""
import time

import streamlit as st

from pages.ui.common import artifact_status, badge, get_bundle, get_encoder, guard, page_setup, workdir
from vibe.config import SAMPLE_DATA, BuildConfig, CatalogConfig
from vibe.curation import curated_path, read_marks
from vibe.jobs import latest_build, start_build

BACKBONES = ["auto", "vibe-mini", "fashion-clip", "tiny-random"]
SUBSETS = ["all", "train", "holdout"]

page_setup("Rebuild index")
state = artifact_status()
badge(get_bundle() if state["built"] else None)
st.write("Embeds new or changed images only (the cache is keyed by image content), retrains the five heads and the style "
         "projection, rebuilds both FAISS indexes and swaps them in at once. The build runs in the background: this page, "
         "the other pages and other users keep answering from the current artifacts until then.")


def show_progress(job) -> None:
    st.markdown(f"**Building** `{job.cfg.catalog.root}` ({job.cfg.catalog.subset}) with `{job.cfg.backbone}` · "
                f"started {time.strftime('%H:%M:%S', time.localtime(job.started))}")
    for stage, (done, total) in list(job.stages.items()):
        st.progress(min(1.0, done / max(1, total)), text=f"{stage}: {done:,} / {total:,}")
    if job.lines:
        st.caption(job.lines[-1])


def show_outcome(job) -> None:
    when = time.strftime("%H:%M:%S", time.localtime(job.finished))
    if job.error:
        st.error(f"The build started at {time.strftime('%H:%M:%S', time.localtime(job.started))} failed: {job.error}")
        return
    result = job.result
    st.success(f"Built {result.n_items:,} items with {result.backbone['description']} (finished {when}).")
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


job = latest_build(workdir())
if job is not None and job.running:
    @st.fragment(run_every=1.0)
    def live() -> None:
        if not job.running:
            st.rerun()  # the whole page: the outcome, and the badge of the new build
        show_progress(job)

    live()
    st.stop()

if state["built"]:
    marks = read_marks(state["catalog"]) if state["catalog_exists"] else None
    if marks is not None:
        trained = get_bundle().artifacts.manifest.get("training", {}).get("projection", {}).get("curated_marks", 0)
        st.info(f"{len(marks)} merchandisers' marks on mix & match suggestions in `{curated_path(state['catalog'])}` "
                f"({trained} of them in the current build): the next build trains the style space on all of them, each "
                "counted more than a mined triplet.", icon=":material/thumbs_up_down:")

with st.form("rebuild"):
    # defaults: the settings of the current build, so a rebuild repeats it unless changed on purpose
    data = st.text_input("Catalogue folder (styles.csv + images/)", value=state.get("catalog") or str(SAMPLE_DATA))
    current = state["backbone"]["name"] if state["built"] else "auto"
    choices = BACKBONES if current in BACKBONES else [current, *BACKBONES]
    backbone = st.selectbox("Backbone", choices, index=choices.index(current),
                            help="auto = FashionCLIP when it can be loaded, else the offline vibe-mini")
    subset = st.selectbox("Items", SUBSETS, index=SUBSETS.index(state.get("subset", "all")),
                          help="train/holdout: a deterministic split by item id")
    go = st.form_submit_button("Rebuild", type="primary")

if go:
    with guard():
        cfg = BuildConfig(catalog=CatalogConfig(root=data, subset=subset, holdout_fraction=state.get("holdout_fraction", 0.2)),
                          backbone=backbone, workdir=workdir())
        start_build(cfg, encoder=get_encoder(backbone))
    st.rerun()
if job is not None:
    show_outcome(job)
    if job.lines:
        with st.expander("Build log"):
            st.code("\n".join(job.lines), language=None)
