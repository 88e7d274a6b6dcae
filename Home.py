"""Find-My-Vibe dashboard: landing page with the catalogue, the backbone and the artifact status."""
import plotly.express as px
import streamlit as st

from pages.ui.common import REBUILD_PAGE, artifact_status, badge, get_bundle, page_setup, workdir
from vibe.config import HEADS

page_setup("Find-My-Vibe")
st.write("Match product photos against the catalogue: the **same item**, or a **mix & match** outfit in the same style.")

state = artifact_status()
bundle = get_bundle() if state["built"] else None
if not state["built"]:
    st.info(f"No artifacts in `{workdir()}` yet: build them once (about a minute on the sample catalogue).")
    st.page_link(REBUILD_PAGE, label="Go to Rebuild index", icon=":material/build:")
    st.stop()
badge(bundle)
if bundle is None:
    st.stop()

art = bundle.artifacts
c1, c2, c3 = st.columns(3)
c1.metric("Catalogue items", f"{len(art.items):,}")
c2.metric("Backbone", bundle.encoder.name)
c3.metric("Built", state["created_at"].replace("T", " ")[:16])
st.caption(f"Catalogue: `{state['catalog']}` · artifacts: `{art.path}`")
if not state["catalog_exists"]:
    st.warning("The catalogue folder of this build is gone: thumbnails will be missing. Rebuild with a catalogue that exists.")
    st.page_link(REBUILD_PAGE, label="Rebuild index", icon=":material/build:")
elif state["stale"]:
    st.warning("The catalogue changed since this build (styles.csv, images or saved label fixes): matches and heads do "
               "not include the changes until the next build.")
    st.page_link(REBUILD_PAGE, label="Rebuild index", icon=":material/build:")
else:
    st.success("Artifacts are up to date with the catalogue.")

st.subheader("What the catalogue holds")
head = st.selectbox("Attribute", HEADS, key="home_head")
counts = art.items[head].fillna("(missing)").value_counts()
if head == "item_type":  # 100+ types read best inside their categories (and a sample drawn per type is all one height)
    table = art.items.fillna({"master": "(no category)", "sub": "(no sub-category)", "item_type": "(missing)"})
    fig = px.treemap(table.groupby(["master", "sub", "item_type"]).size().reset_index(name="items"),
                     path=[px.Constant("catalogue"), "master", "sub", "item_type"], values="items")
    fig.update_traces(textinfo="label+value", root_color="#f4f4f4")
    fig.update_layout(height=520, margin=dict(l=0, r=0, t=10, b=0))
else:
    fig = px.bar(x=counts.values, y=counts.index, orientation="h", labels={"x": "items", "y": head}, text=counts.values)
    fig.update_layout(yaxis={"autorange": "reversed", "automargin": True}, height=max(260, 24 * len(counts) + 60),
                      margin=dict(l=0, r=10, t=10, b=0))
st.plotly_chart(fig)
st.caption(f"{len(counts)} {head} values over {len(art.items):,} items"
           + ("; by category and sub-category (click a tile to zoom in)" if head == "item_type" else ""))

st.subheader("Pages")
st.page_link("pages/1_Find_matches.py", label="Find matches: upload a photo, get the same item or a style combo", icon=":material/search:")
st.page_link("pages/2_Head_accuracy.py", label="Head accuracy: confusion matrices and per-class metrics", icon=":material/grid_on:")
st.page_link("pages/3_Embedding_space.py", label="Embedding space: UMAP of the 512-D and 256-D spaces", icon=":material/scatter_plot:")
st.page_link("pages/4_Catalogue_QA.py", label="Catalogue QA: how many labels look wrong and which, duplicate photos, fixes for the next build", icon=":material/fact_check:")
st.page_link(REBUILD_PAGE, label="Rebuild index: embeddings, heads and indexes", icon=":material/build:")
st.page_link("pages/6_Batch_match.py", label="Batch match: a folder or zip of photos against the catalogue, as CSV",
             icon=":material/library_add_check:")
