"""The product picker of Find matches (pages/ui/boxes/index.html): the upload with its product boxes, numbered; a
click searches another product, a drag draws a box. Widgets beside it (a choice of product, a box typed in) do the same
for keyboards and for tests, which cannot run a component."""
from __future__ import annotations

import base64
import io
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components
from PIL import Image

from pages.ui.common import thumbnail_grid

_component = components.declare_component("product_picker", path=str(Path(__file__).with_name("boxes")))


def _data_url(photo: Image.Image, side: int = 900) -> str:
    shown = photo.copy()
    shown.thumbnail((side, side))
    buf = io.BytesIO()
    shown.save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def picked_so_far(key: str):
    """The user's choice for upload `key` so far: ("proposal", index), ("box", box), or None (nothing picked yet: the
    default search, which tries the first proposals and keeps the most catalogue-like)."""
    return st.session_state.get(f"pick-{key}", {}).get("choice")


def pick_product(photo: Image.Image, proposals, key: str, searched: int | None = None):
    """What the user wants searched in an upload: ("proposal", index), ("box", (x0, y0, x1, y1) in the pixels of
    `photo`), or None while nothing is picked (the default search: `searched` is the proposal it kept, shown as
    picked). The latest of a click on the picker and a change of the widgets wins; a new upload (another `key`)
    starts with nothing picked. `proposals`: the products found in `photo` (vibe.locate.proposals.Proposal), best first."""
    boxes = [p.box for p in proposals]
    state = st.session_state.setdefault(f"pick-{key}", {"choice": None, "seen": None})
    choice = state["choice"]
    current = searched if choice is None else choice[1] if choice[0] == "proposal" else None
    event = _component(src=_data_url(photo), width=photo.width, height=photo.height, boxes=[list(b) for b in boxes],
                       picked=-1 if current is None else current,
                       drawn=list(choice[1]) if choice and choice[0] == "box" else None, key=f"picker-{key}",
                       default=None)
    if event and event.get("at") != state["seen"]:
        state["seen"] = event["at"]
        state["choice"] = ("proposal", int(event["index"])) if event["kind"] == "pick" else ("box", tuple(event["box"]))
        st.rerun()
    labels = [f"{i + 1}" for i in range(len(boxes))]
    if len(boxes) > 1:
        chosen = st.segmented_control("Product to search", labels, default=labels[current] if current is not None else None,
                                      key=f"product-{key}-{current}")
        if chosen is not None and int(chosen) - 1 != current:
            state["choice"] = ("proposal", int(chosen) - 1)
            st.rerun()
    with st.expander("Or type a box (left, top, right, bottom, in pixels of the photo as shown here)"):
        typed = st.text_input("Box", key=f"box-{key}", placeholder=f"e.g. 10,20,{photo.width // 2},{photo.height // 2}")
        if st.button("Search this box", key=f"box-go-{key}") and typed:
            try:
                box = tuple(float(v) for v in typed.split(","))
            except ValueError:
                box = ()
            if len(box) != 4:
                st.error(f"A box is four numbers, left,top,right,bottom (got {typed!r}).")
            else:
                state["choice"] = ("box", box)
                st.rerun()
    return state["choice"]


def other_products(others: list[dict], key: str, root: Path) -> None:
    """The other products the default search tried in upload `key` (FindResult.query_view["others"]), each with its
    nearest catalogue photo: what the search did not keep, at a glance; a button searches one of them."""
    if not others:
        return
    st.markdown("**Also in this photo**: the other products tried, each with its nearest catalogue photo")

    def search(card: dict) -> None:
        if st.button(f"Search product {card['proposal'] + 1}", key=f"other-{key}-{card['proposal']}"):
            st.session_state[f"pick-{key}"]["choice"] = ("proposal", card["proposal"])
            st.rerun()

    thumbnail_grid([{"path": o["path"], "proposal": o["proposal"], "title": f"Product {o['proposal'] + 1}",
                     "lines": [o["name"], f"id {o['id']} · similarity {o['score']:.3f}",
                               *(["close enough to be this very product"] if o["verdict"] == "match" else [])]}
                    for o in others], root, columns=6, actions=search)
