"""The outfit board of mix & match: the query, one card per complementary slot, alternatives on demand, and the
merchandiser's "goes with" / "does not go with" marks."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from vibe.catalog.marks import read_marks, record_mark
from vibe.catalog.rules import COMPLETES
from vibe.errors import VibeError
from vibe.search.results import FindResult, Match


def _mark(root: Path, items, anchor: int, item: int, goes: bool) -> None:
    try:
        row = record_mark(root, items, anchor, item, goes, st.session_state.get("curator", ""))
        st.session_state["mark_message"] = ("success", f"Saved: {item} {row['mark']} {anchor} (the other side of the "
                                                       f"triplet, {row['negative' if goes else 'positive']}, from {row['filled']}).")
    except VibeError as e:
        st.session_state["mark_message"] = ("error", str(e))


def _card(m: Match, rank: int, root: Path, items, anchor: int | None, key: str) -> None:
    with st.container(border=True):
        st.caption(f"**#{rank} · {m.slot}**")
        path = Path(root) / m.path
        if path.is_file():
            st.image(str(path), width="stretch")
        st.markdown(f"**{m.name}**")
        st.caption(f"{m.labels['item_type']} · {m.labels['style'] or '?'} · {m.labels['gender'] or '?'} · id {m.id} · {m.score:.3f}")
        why = "" if anchor is not None else " Marks need a catalogue item as the query (pick one, or upload one of its photos)."
        a, b = st.columns(2)  # icon-only buttons: five cards a row leave no room for words (the help says what they do)
        a.button("", key=f"goes-{key}", icon=":material/thumb_up:", disabled=anchor is None, help="Goes with the query." + why,
                 on_click=_mark, args=(root, items, anchor, m.id, True), width="stretch")
        b.button("", key=f"clash-{key}", icon=":material/thumb_down:", disabled=anchor is None,
                 help="Does not go with the query." + why, on_click=_mark, args=(root, items, anchor, m.id, False), width="stretch")


def outfit_board(result: FindResult, root: Path, items, anchor: int | None, preview, per_row: int = 5) -> None:
    """The board: the best option of every slot, alternatives per slot in an expander, the marks on every card."""
    slot = result.query_slot or {}
    # the heads were unsure: the slot is its neighbours' vote
    st.subheader(f"Outfit around this {slot.get('slot', 'item')}" + (" (by its look-alikes)" if slot.get("voted") else ""))
    st.caption(f"Its slot comes from {slot.get('how', '?')}. Each card is the best item of one slot for this style, "
               "among items that pass the filters above; more options per slot below. The numbers are the ranks of "
               "the download.")
    kind, text = st.session_state.pop("mark_message", (None, None))
    if kind:
        (st.success if kind == "success" else st.error)(text)
    if not result.outfit:
        st.info(f"A {slot.get('slot')} completes no outfit here (innerwear, nightwear, personal care and gifts are not part "
                "of one, or no item of a complementary slot passed the filters).")
        return
    slots = list(result.outfit.items())
    beyond = slot.get("beyond_k", [])
    missing = [s for s in COMPLETES.get(slot.get("slot"), ())
               if s not in result.outfit and s not in beyond and s in set(items["slot"])]
    if beyond:
        st.caption(f"Past the first {result.k} matches: " + ", ".join(beyond) + " (raise *Matches* to see them).")
    if missing:
        st.caption("No item passed the filters for: " + ", ".join(missing) + ".")
    rank = {m.row: i for i, m in enumerate(result.matches, 1)}  # the numbers of the list and of the CSV
    cards = [("query", None), *slots]
    for start in range(0, len(cards), per_row):
        for col, (name, options) in zip(st.columns(per_row), cards[start:start + per_row]):
            with col:
                if options is None:
                    with st.container(border=True):
                        st.caption("**query**")
                        st.image(preview, width="stretch")
                else:
                    _card(options[0], rank[options[0].row], root, items, anchor, f"{name}-0")
    for name, options in slots:
        if len(options) > 1:
            with st.expander(f"More {name} options ({len(options) - 1})"):
                cols = st.columns(per_row)
                for i, m in enumerate(options[1:], 1):
                    with cols[(i - 1) % per_row]:
                        _card(m, rank[m.row], root, items, anchor, f"{name}-{i}")
    marks = read_marks(root)
    st.caption(f"{len(marks)} marks recorded for this catalogue in `{Path(root) / 'curated_triplets.csv'}`; the next "
               "rebuild trains the style space on them.")
