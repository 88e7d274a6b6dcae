"""Find matches: upload a photo or pick a catalogue item; same item (strict) or style combo (mix & match)."""
import streamlit as st

from pages.ui.board import outfit_board
from pages.ui.common import guard, page_with_bundle, thumbnail_grid
from pages.ui.picker import other_products, pick_product, picked_so_far
from vibe.util.files import content_hash
from vibe.util.images import PHOTO_TYPES

MODES = {"Same item (strict)": "same", "Style combo (mix & match)": "combo"}

bundle = page_with_bundle("Find matches")
items = bundle.artifacts.items
root = bundle.artifacts.catalog_root

left, right = st.columns([2, 3])
with left:
    source = st.radio("Query", ["Upload a photo", "Pick a catalogue item", "Search by words"], horizontal=True)
    words = None
    if source == "Search by words":
        words = st.text_input("Words", placeholder="e.g. white sports shoes men, navy kurta, Puma")
        query, preview = None, None
    elif source == "Upload a photo":
        upload = st.file_uploader("Product photo", type=PHOTO_TYPES)
        query = {"image": upload.getvalue(), "name": upload.name} if upload else None
        preview = upload.getvalue() if upload else None
    else:
        row = st.selectbox("Catalogue item", range(len(items)),
                           format_func=lambda r: f"{items['id'].iat[r]} · {items['name'].iat[r]}")
        query = {"item_id": int(items["id"].iat[row])}
        preview = str(root / items["path"].iat[row])
with right:
    mode_label = st.segmented_control("Mode", list(MODES), default="Same item (strict)", required=True)
    k = st.slider("Matches", 1, 30, 8)
    if MODES[mode_label] == "combo":
        st.text_input("Your name, for the marks on suggestions", key="curator", placeholder="e.g. Asha (merchandising)")

if words:
    with guard():
        found = bundle.matcher.search_words(words, k=k)
    asked = "; ".join(f"{h} = {' or '.join(v)}" for h, v in found.attributes.items()) or "no attribute"
    st.markdown(f"**Read as:** {asked}" + (f" · name words: {', '.join(found.words)}" if found.words else ""))
    st.caption("Ranked by the heads' probabilities for each photo, with the catalogue labels as evidence"
               + (" and the text tower's ranking fused in." if found.text_tower else
                  " (this backbone has no text tower: FashionCLIP would also rank by the words themselves)."))
    if found.note():
        (st.info if found.matches else st.warning)(found.note())
    st.subheader(f"{len(found.matches)} items for “{words}”")
    thumbnail_grid([{"path": m.path, "title": f"#{i} · {m.name}",
                     "lines": [" · ".join(v or "?" for v in m.labels.values()), f"id {m.id}"]}
                    for i, m in enumerate(found.matches, 1)], root)
    st.stop()
if query is None:
    st.info("Upload a photo, pick a catalogue item, or search by words.")
    st.stop()

mode = MODES[mode_label]
located, exclude = None, []
if "image" in query:  # an upload: every product in it, so that the user can pick which one is searched
    with guard():
        located, exclude = bundle.matcher.locate(query["image"], query["name"])
picker = located is not None and bool(located.proposals)
q1, q2 = st.columns([2, 3] if picker else [1, 3])
with q1:
    key = content_hash(query["image"])[:12] if located is not None else None
    choice, result = picked_so_far(key) if picker else None, None
    with guard():
        if located is not None and choice is None:  # the default search: it says which product it kept
            result = bundle.matcher.search_views(located, mode=mode, k=k, exclude=exclude)
    if picker:
        choice = pick_product(located.photo, located.proposals, key, result.query_view["proposal"] if result else None)
    else:
        with guard():
            st.image(preview, caption="query", width=180)
    with guard():
        if result is None and choice and choice[0] == "proposal":
            result = bundle.matcher.find(**query, mode=mode, k=k, proposal=choice[1])
        elif result is None and choice and choice[0] == "box":
            result = bundle.matcher.find(**query, mode=mode, k=k, box=located.in_photo(choice[1]))
        elif result is None:
            result = bundle.matcher.find(**query, mode=mode, k=k)
    if result.query_view:
        st.caption(result.query_view["note"])
    if result.query_image is not None:
        st.image(result.query_image, caption="searched as", width=120)
with q2:
    st.markdown("**Predicted attributes**")
    st.dataframe([{"attribute": h, "prediction": p.label, "confidence": round(p.confidence, 3),
                   "runner-up": f"{p.top[1][0]} ({p.top[1][1]:.2f})" if len(p.top) > 1 else ""}
                  for h, p in result.predictions.items()], hide_index=True)
    applied = ", ".join(f"{h} = {v}" for h, v in result.filters.items()) or "none"
    st.markdown(f"**Filters applied:** {applied}")
    for f in result.filter_notes:
        if not f.applied:
            st.caption(f"Not filtered on **{f.head} = {f.value}** ({f.status}): {f.reason}.", help=f.detail or None)

if picker and result.query_view:
    other_products(result.query_view.get("others") or [], key, root)

if result.mode == "combo":
    # marks need the query to be a catalogue item: a picked one, or an upload identical to one of its photos
    anchor = result.query_id if result.query_id is not None else (
        result.query_view.get("same_as") if result.query_view else None)
    # the query card shows what was searched: the product cut out of an upload, not the whole photo
    outfit_board(result, root, items, anchor, preview if result.query_image is None else result.query_image)
else:
    st.subheader(f"{len(result.matches)} matches · {mode_label}")
    note = result.same_item_note()
    if note and result.verdict == "no match":
        st.warning(note + (" Or pick another box above, or draw one around the product." if picker else ""))
    elif note:
        st.success(note)
    thumbnail_grid([{"path": m.path, "title": f"#{i} · {m.name}",
                     "lines": [" · ".join(v or "?" for v in m.labels.values()), f"id {m.id} · similarity {m.score:.3f}",
                               *(["⚑ " + m.note] if m.note else [])]}
                    for i, m in enumerate(result.matches, 1)], root)
st.download_button("Download results (CSV)", result.to_frame().to_csv(index=False), file_name=f"matches-{result.mode}.csv",
                   mime="text/csv")
