"""The Catalogue QA page's decisions: a label card's accept / set / right buttons and a duplicate group's verdict,
each saved through vibe.catalog.fixes (label_fixes.csv, duplicate_verdicts.csv beside styles.csv)."""
from __future__ import annotations

import streamlit as st

from vibe.catalog.fixes import ACCEPTED, DIFFERENT, RIGHT, SAME, SET, record_fix, record_verdict
from vibe.config import OTHER


def who() -> str:
    return st.session_state.get("qa-who", "")


def label_actions(root, head: str, vocab: list[str]):
    """The buttons under one flagged item's card (the card carries id, label, suggested)."""
    def draw(card: dict) -> None:
        item, label, suggested = card["id"], card["label"], card["suggested"]
        if st.button(f"Accept: {suggested}", key=f"fix-accept-{head}-{item}", width="stretch"):  # no choice stands out
            _save(lambda: record_fix(root, item, head, label, suggested, ACCEPTED, who()), f"{item}: {label} → {suggested}")
        other = st.selectbox("Another label", [v for v in vocab if v not in (label, OTHER)], key=f"fix-other-{head}-{item}",
                             index=None, placeholder="Set another label…", label_visibility="collapsed")
        if other and st.button(f"Set: {other}", key=f"fix-set-{head}-{item}", width="stretch"):
            _save(lambda: record_fix(root, item, head, label, other, SET, who()), f"{item}: {label} → {other}")
        if st.button("Label is right", key=f"fix-right-{head}-{item}", width="stretch"):
            _save(lambda: record_fix(root, item, head, label, label, RIGHT, who()), f"{item}: {label} confirmed")
    return draw


def verdict_buttons(root, ids: list[int]) -> None:
    key = "-".join(map(str, ids))
    left, right = st.columns(2)
    if left.button("Same product", key=f"dup-same-{key}", width="stretch"):
        _save(lambda: record_verdict(root, ids, SAME, who()), f"group {ids[0]}…: same product",
              "the group is kept for the export, hidden from the list")
    if right.button("Different products", key=f"dup-diff-{key}", width="stretch"):
        _save(lambda: record_verdict(root, ids, DIFFERENT, who()), f"group {ids[0]}…: different products",
              "these photos are never grouped together again")


def _save(record, what: str, then: str = "the next build applies it") -> None:
    from vibe.errors import VibeError

    try:
        record()
    except VibeError as e:
        st.error(str(e))
        return
    st.session_state["qa-saved"] = f"Saved ({what}); {then}."
    st.rerun()
