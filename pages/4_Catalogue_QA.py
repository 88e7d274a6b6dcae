"""Catalogue QA: how many labels look wrong and which, near-identical photos under several ids, and the team's
decisions on both, saved beside styles.csv for the next build and the product-information system."""
import streamlit as st

from pages.ui.common import guard, page_with_bundle, thumbnail_grid
from pages.ui.qa import label_actions, verdict_buttons
from vibe.catalog.fixes import export_fixes, fixes_path, read_fixes, verdicts_path
from vibe.config import HEADS
from vibe.qa import duplicates, labels

TRUSTED = 0.8  # heads agreeing with fewer of the labels than this get a warning over their suggestions
bundle = page_with_bundle("Catalogue QA")
art = bundle.artifacts
root = art.catalog_root


def _stamp(path) -> float:  # a saved decision changes what the audit leaves out: part of the cache key
    return path.stat().st_mtime_ns if path.is_file() else 0


@st.cache_data(show_spinner="Scoring every label against held-out predictions and neighbours…", max_entries=10)
def audit(build_id: str, head: str, fixes_stamp: float):
    return labels.audit_labels(art, head)


@st.cache_data(show_spinner="Looking for near-identical photos…", max_entries=10)
def groups(build_id: str, threshold: float, verdicts_stamp: float):
    return duplicates.find_groups(art, threshold)


if saved := st.session_state.pop("qa-saved", None):
    st.toast(saved)
st.text_input("Your name, saved with each decision", key="qa-who", placeholder="e.g. Asha (catalogue team)")
tab_labels, tab_fixes, tab_dupes = st.tabs(["Label problems", "Fixes", "Duplicates"])
with tab_labels:
    if not labels.audited(art):  # a build made with --audit-folds 0: say so here, and leave the duplicates tab working
        st.info("This build was made without the label audit (`--audit-folds 0`). Rebuild with the default settings "
                "(`python -m vibe build --data DIR`) to list the labels the model disputes.")
    else:
        head = st.selectbox("Attribute", HEADS, key="qa-head")
        with guard():
            found = audit(bundle.build_id, head, _stamp(fixes_path(root)))
        left, mid, right = st.columns(3)
        left.metric(f"{head} labels that look wrong", f"about {found.estimate:,}",
                    help="Confident learning's estimate (cleanlab.count.num_label_issues over the heads' out-of-fold "
                         "probabilities): measured against planted flips in the README's table.")
        mid.metric("Disagree with the held-out heads", f"{len(found.table) + found.decided:,}")
        right.metric("Decided by the team", f"{found.decided:,}", help="fixed or confirmed in label_fixes.csv")
        trust = (f"The heads that judge these labels agree with {found.agreement:.0%} of the catalogue's {head} labels "
                 "on items they never saw (out of fold)")
        if found.agreement < TRUSTED:  # a weak backbone or a small catalogue: many suggestions are the model's mistakes
            st.warning(trust + ": with heads this often wrong, many suggestions below are the model's mistakes. Look at "
                       "each photo before accepting; *Label is right* keeps an item off this list.")
        else:
            st.caption(trust + ".")
        every = st.toggle(f"Show every disagreement ({len(found.table):,})", key="qa-every")
        table = found.table if every else found.shown
        st.caption((f"All {len(table)} undecided disagreements" if every else
                    f"About {found.estimate} {head} labels look wrong; here are the {len(table)} undecided ones") +
                   ", most certain first: heads that never saw the item's label predict another, and the photos most "
                   "like it mostly carry another label. Accept the suggestion, set another label, or confirm the label: "
                   f"decisions go to `{fixes_path(root).name}` beside styles.csv and the next build applies them.")
        top = st.slider("Cards shown", 4, 80, min(16, max(4, len(table))), step=4, key="qa-top") if len(table) > 4 else 4
        thumbnail_grid([{"path": r.path, "title": f"{r.label} → {r.suggested}?", "id": int(r.id), "label": r.label,
                         "suggested": r.suggested,
                         "lines": [r.name, f"id {r.id} · suspicion {r.score:.1f}",
                                   f"the model: {r.p_suggested:.0%} {r.suggested}, {r.p_label:.0%} {r.label}",
                                   f"similar photos: {r.neighbours_suggested:.0%} {r.suggested}, "
                                   f"{r.neighbours_label:.0%} {r.label}"]} for r in table.head(top).itertuples()],
                       root, columns=4, actions=label_actions(root, head, art.heads.vocabs[head]))
        st.download_button("Export this list (CSV)", table.drop(columns=["path"]).to_csv(index=False),
                           file_name=f"label-problems-{head}.csv", mime="text/csv")

with tab_fixes:
    read = read_fixes(root)
    applied = art.manifest["catalog"].get("report", {}).get("label_fixes") or {}
    st.caption(f"Decisions in force in `{fixes_path(root)}` (the latest per item and attribute; the file keeps every "
               "one, with who and when). styles.csv is never edited: each build reads the fixes over it.")
    if applied:
        st.info(f"This build applied {applied['applied']} fixes and kept {applied['confirmed']} labels confirmed right"
                + (f"; {len(applied['stale'])} were not applied because styles.csv changed that label since"
                   if applied["stale"] else "") + (f"; {len(applied['skipped'])} rows could not be read" if applied["skipped"] else ""))
    for number, why in read.skipped:
        st.warning(f"{fixes_path(root).name} line {number} is skipped: {why}.")
    st.dataframe(read.fixes, hide_index=True, width="stretch")
    st.download_button("Export the fixes for the product-information system (CSV)",
                       export_fixes(root).to_csv(index=False), file_name="label-fixes.csv", mime="text/csv",
                       disabled=read.fixes.empty)

with tab_dupes:
    default = duplicates.default_duplicate_threshold(art)
    threshold = st.slider("How alike two photos must be to be checked", 0.90, 1.0, float(default), step=0.0005,
                          format="%.4f",
                          help="Cosine similarity in the 512-D space that proposes a pair; so do each photo's nearest "
                               f"other photo down to {duplicates.NEAREST_COSINE} and a perceptual hash within "
                               f"{duplicates.HASH_DISTANCE} of 256 bits. Every proposed pair is then aligned and "
                               "compared pixel by pixel: a crop, border, re-toned or re-encoded copy is kept, the same "
                               "pose in another colour is not. Lower checks more pairs (slower on a large catalogue).")
    with guard(), st.spinner("Aligning the photos of every proposed pair..."):
        found_groups = groups(bundle.build_id, threshold, _stamp(verdicts_path(root)))
    decided_too = st.toggle("Show groups marked same product", key="qa-dup-decided")
    shown = [g for g in found_groups if decided_too or not g.verdict]
    st.metric("Groups of near-identical photos to check", len([g for g in found_groups if not g.verdict]))
    by_id = art.items.set_index("id")
    for i, group in enumerate(shown[:30], 1):
        st.markdown(f"**Group {i}** · {len(group.ids)} items · found by {group.describe()}"
                    + (f" · **{group.verdict}**" if group.verdict else ""))
        thumbnail_grid([{"path": by_id.at[item, "path"], "title": f"id {item}", "lines": [by_id.at[item, "name"]]}
                        for item in group.ids[:8]], root, columns=8)
        if not group.verdict:
            verdict_buttons(root, group.ids)
    if len(shown) > 30:
        st.caption(f"The first 30 of {len(shown)} groups are shown; the export holds all.")
    st.download_button("Export groups (CSV)", duplicates.groups_table(art, found_groups).to_csv(index=False),
                       file_name="duplicates.csv", mime="text/csv")
