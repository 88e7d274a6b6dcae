"""Batch match: many photos (or a zip of them) against the catalogue at once; which are ours, which have no match."""
import base64
import io

import pandas as pd
import streamlit as st

from pages.ui.common import guard, page_with_bundle
from vibe.search.batch import COLUMNS, as_table, match_photos, per_photo, photos_from_uploads
from vibe.util.files import content_hash
from vibe.util.images import PHOTO_TYPES, load_image

TOP = 3
bundle = page_with_bundle("Batch match")
root = bundle.artifacts.catalog_root
st.caption("Upload a competitor's collection, a supplier's photos or a folder zipped: every photo is searched in "
           "*Same item* (or *Style combo*) mode, and photos whose best match is under the build's same-item threshold "
           "are marked **no match**. The same run from a terminal: `python -m vibe match FOLDER --out matches.csv`.")

uploads = st.file_uploader("Photos, or a zip of photos", type=[*PHOTO_TYPES, "zip"],
                           accept_multiple_files=True)
left, right = st.columns(2)
mode = left.segmented_control("Mode", ["same", "combo"], default="same", required=True,
                              format_func={"same": "Same item (strict)", "combo": "Style combo (mix & match)"}.get)
k = right.slider("Matches per photo", 1, 10, 5)
if not uploads:
    st.info("Add photos (or a zip) to match them against the catalogue.")
    st.stop()
files = [(u.name, u.getvalue()) for u in uploads]
key = content_hash(b"".join(content_hash(d).encode() for _, d in files) + f"{mode}{k}{bundle.build_id}".encode())
with guard():
    photos = photos_from_uploads(files)
if not photos:
    st.info("None of these files is a photo (" + ", ".join(PHOTO_TYPES) + ", or a zip of them).")
    st.stop()

if st.session_state.get("batch", {}).get("key") != key:
    if not st.button(f"Match {len(photos)} photos", type="primary"):
        st.stop()
    bar, frames = st.progress(0.0, text="Matching…"), []
    with guard():
        for rows, summary in match_photos(bundle.matcher, photos, mode=mode, k=k,
                                          progress=lambda _, done, total: bar.progress(done / total, f"{done} of {total}")):
            frames.append(pd.DataFrame(rows, columns=COLUMNS))
    bar.empty()
    st.session_state["batch"] = {"key": key, "rows": as_table(frames), "summary": summary}

done = st.session_state["batch"]
rows, summary = done["rows"], done["summary"]
a, b, c, d = st.columns(4)
a.metric("Photos", summary.photos)
b.metric("Matched", summary.matched)
c.metric("No match", summary.no_match)
d.metric("Unreadable", summary.errors)
cut = bundle.matcher.same_photo_cosine
st.caption(f"{summary.images_per_s:.1f} photos/s. " + (
    f"A photo is *matched* when its best match's similarity (cosine, up to 1) is at least {cut:.3f}, the cut from which "
    "this build found a photo's own item at its calibrated precision." if cut and cut <= 1 else
    "This build has no calibrated same-item cut: photos are listed, not judged."))


@st.cache_data(max_entries=2000, show_spinner=False)
def thumb(data: bytes | None = None, path: str | None = None) -> str | None:
    try:
        im = load_image(data if data is not None else path, max_side=128)
    except Exception:  # noqa: BLE001 - an unreadable photo simply has no thumbnail
        return None
    im.thumbnail((128, 128))
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


table = per_photo(rows, TOP)
by_name = {p.name: p for p in photos}
table.insert(0, "photo", [thumb(data=by_name[q].read()) if q in by_name else None for q in table["query"]])
paths = dict(zip(bundle.artifacts.items["id"], bundle.artifacts.items["path"]))
for r in range(1, TOP + 1):
    if f"id_{r}" in table:
        table[f"match_{r}"] = [thumb(path=str(root / paths[i])) if pd.notna(i) and i in paths else None
                               for i in table[f"id_{r}"]]
table["error"] = table["error"].fillna("")  # an unreadable photo's reason beside its status, not off screen
shown = ["photo", "query", "status", "error"] + [c for r in range(1, TOP + 1)
                                                 for c in (f"match_{r}", f"id_{r}", f"name_{r}", f"score_{r}") if c in table]
shown.append("searched")
config = {"photo": st.column_config.ImageColumn("Photo", width="small"), "query": "Photo file", "status": "Status",
          "error": "Why unreadable", "searched": "Searched as"}
for r in range(1, TOP + 1):
    config |= {f"match_{r}": st.column_config.ImageColumn(f"Match {r}", width="small"), f"id_{r}": f"Id {r}",
               f"name_{r}": f"Name {r}", f"score_{r}": st.column_config.NumberColumn(f"Similarity {r}", format="%.3f")}
st.dataframe(table[shown], column_config=config, hide_index=True, row_height=80, width="stretch",
             height=min(80 * len(table) + 40, 880))  # every photo in view up to ten, then a scroll
st.download_button("Download every match (CSV)", rows.to_csv(index=False).encode(), "matches.csv", "text/csv")
