"""Rebuild index: the same `vibe.build.pipeline.build` as `python -m vibe build`, run in the background with progress per stage."""
import time
from dataclasses import replace
from pathlib import Path

import streamlit as st

from pages.ui.common import artifact_status, badge, get_bundle, get_encoder, guard, page_setup, workdir
from vibe.build.jobs import latest_build, rebuild_warnings, start_build
from vibe.catalog.marks import curated_path, read_marks
from vibe.config import BuildConfig, build_config_from_record
from vibe.models.registry import availability

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

current = (build_config_from_record(get_bundle().artifacts.manifest.get("config", {}), workdir=workdir())
           if state["built"] else None)
base = current or BuildConfig(workdir=workdir())


@st.cache_data(ttl=300, show_spinner=False)
def can_load(name: str) -> tuple[bool, str]:
    return availability(name)


def start(cfg: BuildConfig) -> None:
    st.session_state.pop("pending_rebuild", None)
    with guard():
        start_build(cfg, encoder=get_encoder(cfg.backbone))
    st.rerun()


@st.dialog("Rebuild with these changes?", on_dismiss=lambda: st.session_state.pop("pending_rebuild", None))
def confirm(cfg: BuildConfig, warnings: list[str]) -> None:
    for line in warnings:
        st.warning(line)
    a, b = st.columns(2)
    if a.button("Rebuild anyway", type="primary", key="confirm-rebuild"):
        start(cfg)
    if b.button("Cancel", key="cancel-rebuild"):
        st.session_state.pop("pending_rebuild", None)
        st.rerun()


with st.form("rebuild"):
    # everything the current build recorded is kept (heads, style space, check, index, audit settings...); only these
    # three can be changed here, and a change that is out of the ordinary asks for a confirmation first
    data = st.text_input("Catalogue folder (styles.csv + images/)", value=str(base.catalog.root))
    choices = list(dict.fromkeys([base.backbone, *BACKBONES]))
    backbone = st.selectbox("Backbone", choices, index=0, format_func=lambda n: n + ("" if can_load(n)[0] else " (cannot be loaded here)"),
                            help="auto = FashionCLIP when it can be loaded, else the offline vibe-mini. " + " ".join(
                                f"{n}: {can_load(n)[1]}." for n in choices))
    subset = st.selectbox("Items", SUBSETS, index=SUBSETS.index(base.catalog.subset),
                          help="all, or the train part of a deterministic split by item id (holdout is for evaluation)")
    go = st.form_submit_button("Rebuild", type="primary")
st.caption("Every other setting repeats the current build's: " + (
    f"min class count {base.heads.min_class_count}, audit folds {base.heads.audit_folds}, ranking check "
    f"on {base.quality.per_change} held-out photos per change (half calibrate the filters, half are scored), "
    f"index {base.index}, engine {base.engine}."))

if go:
    cfg = replace(base, backbone=backbone, catalog=replace(base.catalog, root=Path(data), subset=subset))
    ok, why = can_load(backbone)
    if not ok:
        st.error(f"The backbone {backbone} cannot be loaded here: {why}.")
    else:
        warnings = rebuild_warnings(current, cfg)
        if warnings:
            st.session_state["pending_rebuild"] = (cfg, warnings)
        else:
            start(cfg)
if "pending_rebuild" in st.session_state:
    confirm(*st.session_state["pending_rebuild"])
if job is not None:
    show_outcome(job)
    if job.lines:
        with st.expander("Build log"):
            st.code("\n".join(job.lines), language=None)
