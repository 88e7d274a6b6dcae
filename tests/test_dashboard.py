"""The dashboard pages under streamlit.testing.v1.AppTest, against a real build (tiny backbone, real photos)."""
import base64
import json

import numpy as np
import pytest
from conftest import REPO
from streamlit.testing.v1 import AppTest

from vibe.config import HEADS
from vibe.store.artifacts import load_artifacts

TIMEOUT = 180


@pytest.fixture
def app(built, monkeypatch):
    workdir, _ = built
    monkeypatch.setenv("VIBE_WORKDIR", str(workdir))
    monkeypatch.chdir(REPO)
    at = AppTest.from_file(str(REPO / "Home.py"), default_timeout=TIMEOUT)
    at.run()
    return at


def _open(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}")
    at.run()
    assert not at.exception, at.exception
    return at


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_home_shows_catalogue_backbone_and_status(app, built):
    _no_errors(app)
    workdir, result = built
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Catalogue items"] == f"{result.n_items:,}"
    assert metrics["Backbone"] == "tiny-random"
    assert any("up to date" in s.value for s in app.success)
    assert any("tiny random CLIP" in c.value and "built" in c.value for c in app.caption)


def test_find_matches_from_a_catalogue_item_returns_k_cards(app):
    at = _open(app, "1_Find_matches.py")
    at.radio[0].set_value("Pick a catalogue item")
    at.run()
    at.slider[0].set_value(6)
    at.run()
    _no_errors(at)
    assert len(at.image) == 1 + 6  # the query and six result thumbnails
    assert at.subheader[0].value.startswith("6 matches")
    predictions = at.dataframe[0].value
    assert list(predictions["attribute"]) == list(HEADS)
    assert any("Filters applied" in m.value for m in at.markdown)
    assert at.get("download_button")


def test_mix_and_match_shows_an_outfit_board_and_records_marks(small_catalog, tmp_path, monkeypatch):
    import shutil

    from conftest import fast_build_config

    from vibe.build.pipeline import build
    from vibe.catalog.marks import read_marks

    catalog = tmp_path / "cat"
    shutil.copytree(small_catalog, catalog)  # marks are written beside the catalogue: a copy of its own
    build(fast_build_config(catalog, tmp_path / "w"))
    items = load_artifacts(tmp_path / "w").items
    monkeypatch.setenv("VIBE_WORKDIR", str(tmp_path / "w"))
    monkeypatch.chdir(REPO)
    at = _open(AppTest.from_file(str(REPO / "Home.py"), default_timeout=TIMEOUT), "1_Find_matches.py")
    at.radio[0].set_value("Pick a catalogue item")
    at.run()
    top = int(np.flatnonzero((items["slot"] == "top").to_numpy())[0])
    at.selectbox[0].set_value(top)
    at.get("segmented_control")[0].set_value("Style combo (mix & match)")
    at.run()
    _no_errors(at)
    assert any(h.value == "Outfit around this top" for h in at.subheader)
    slot_captions = [c.value.strip("*").split(" · ")[-1] for c in at.caption if c.value.startswith("**")]
    assert slot_captions[0] == "query" and "top" not in slot_captions[1:]
    assert "bottom" in slot_captions and "footwear" in slot_captions
    at.text_input[0].set_value("Asha")
    at.run()
    goes = [b for b in at.button if b.key.startswith("goes-")]
    assert goes and all(not b.disabled for b in goes)
    goes[0].click()
    at.run()
    _no_errors(at)
    assert any(s.value.startswith("Saved:") for s in at.success)
    marks = read_marks(catalog)
    assert len(marks) == 1 and marks["who"].iat[0] == "Asha" and marks["anchor"].iat[0] == str(items["id"].iat[top])


def test_find_matches_from_an_upload(app, small_catalog):
    at = _open(app, "1_Find_matches.py")
    photo = sorted((small_catalog / "images").iterdir())[3].read_bytes()
    at.file_uploader[0].set_value(("photo.jpg", photo, "image/jpeg"))
    at.run()
    _no_errors(at)
    assert len(at.image) == 1 + 8
    at.file_uploader[0].set_value(("broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "image/jpeg"))
    at.run()
    assert not at.exception
    assert len(at.error) == 1
    assert "broken.jpg" in at.error[0].value and ("damaged" in at.error[0].value or "not an image" in at.error[0].value)
    assert len(at.image) == 0  # no stale results under the error


def test_head_accuracy_confusion_counts_add_up_to_the_heldout_size(app, built):
    at = _open(app, "2_Head_accuracy.py")
    _no_errors(at)
    art = load_artifacts(built[0])
    full = at.dataframe[1].value  # the full matrix in the expander
    assert int(full.to_numpy().sum()) == art.metrics["heads"]["item_type"]["n"] == art.metrics["n_heldout"]
    assert len(at.get("plotly_chart")) == 1
    per_class = at.dataframe[2].value
    assert {"class", "precision", "recall", "f1", "support"} <= set(per_class.columns)
    assert int(per_class["support"].sum()) == art.metrics["n_heldout"]
    at.selectbox[0].set_value("colour")
    at.run()
    _no_errors(at)
    assert int(at.dataframe[1].value.to_numpy().sum()) == art.metrics["heads"]["colour"]["n"]


def _points(spec: dict) -> int:
    n = 0
    for trace in spec["data"]:
        x = trace["x"]
        if isinstance(x, dict):  # plotly 6 ships numpy arrays as base64 typed arrays
            x = np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"]))
        n += len(x)
    return n


def _explorers(at: AppTest) -> list[dict]:
    """The arguments the page hands each explorer component (AppTest does not run the component's page)."""
    return [json.loads(e.proto.json_args) for e in at.get("component_instance")]


def _explorer_data(folder, args: dict) -> dict:
    """The per-point data an explorer fetches from its folder, decoded as explorer.html does."""
    n, raw = args["n"], (folder / args["points"]).read_bytes()
    hover = json.loads((folder / args["hover"]).read_text())
    return {"x": np.frombuffer(raw, "<f4", n), "y": np.frombuffer(raw, "<f4", n, 4 * n),
            "row": np.frombuffer(raw, "<i4", n, 8 * n), "group": np.fromfile(folder / args["group"], "<i2"),
            "file": hover["file"], "name": hover["name"]}


def test_embedding_space_has_one_point_per_item_with_its_photo(app, built):
    at = _open(app, "3_Embedding_space.py")
    _no_errors(at)
    art = load_artifacts(built[0])
    n = art.manifest["n_items"]
    (args,) = _explorers(at)
    folder = art.path / "views" / "explorer"
    data = _explorer_data(folder, args)
    assert len(data["x"]) == len(data["y"]) == len(data["row"]) == len(data["group"]) == len(data["file"]) == n
    assert sorted(data["row"]) == list(range(n))
    assert data["name"] == art.items["name"].iloc[data["row"]].astype(str).tolist()
    assert (folder / "index.html").is_file() and (folder / "plotly.min.js").is_file()
    assert all((folder / "images" / f).is_file() for f in data["file"])  # every hover photo is served with the component
    assert len(args["groups"]) <= 14 and data["group"].max() < len(args["groups"])  # top 12 values, other, missing
    assert len(at.get("component_instance")[0].proto.json_args) < 5_000  # file names travel, not the points
    assert any(f"all {n:,} of {n:,} items" in c.value for c in at.caption)
    at.get("segmented_control")[0].set_value("Side by side")
    at.run()
    _no_errors(at)
    assert [a["n"] for a in _explorers(at)] == [n, n]


def test_rebuild_runs_in_the_background_while_other_sessions_answer(small_catalog, tmp_path, monkeypatch):
    import threading

    from conftest import fast_build_config

    import vibe.build.pipeline
    import vibe.models.registry
    from vibe.build.jobs import latest_build

    workdir = tmp_path / "w"
    vibe.build.pipeline.build(fast_build_config(small_catalog, workdir, subset="train"))
    before = load_artifacts(workdir).build_id
    monkeypatch.setenv("VIBE_WORKDIR", str(workdir))
    monkeypatch.chdir(REPO)
    gate, loads = threading.Event(), []
    real_train, real_load = vibe.build.pipeline.train_projection, vibe.models.registry.load_parts

    def held_train(*a, **k):  # the build waits here until the test lets it go
        gate.wait(60)
        return real_train(*a, **k)

    monkeypatch.setattr(vibe.build.pipeline, "train_projection", held_train)
    monkeypatch.setattr(vibe.models.registry, "load_parts", lambda name: loads.append(name) or real_load(name))

    at = _open(AppTest.from_file(str(REPO / "Home.py"), default_timeout=TIMEOUT), "5_Rebuild_index.py")
    # the form repeats the current build's settings
    assert at.text_input[0].value == str(small_catalog)
    assert at.selectbox[0].value == "tiny-random" and at.selectbox[1].value == "train"
    loads.clear()
    at.button[0].click()
    at.run()
    _no_errors(at)
    job = latest_build(workdir)
    assert job is not None and job.running and job.encoder is not None
    assert loads == []  # the encoder the pages already loaded is reused, not loaded a second time
    assert any("Building" in m.value for m in at.markdown)

    # meanwhile another session answers from the current build, and cannot start a second build
    other = _open(AppTest.from_file(str(REPO / "Home.py"), default_timeout=TIMEOUT), "1_Find_matches.py")
    other.radio[0].set_value("Pick a catalogue item")
    other.run()
    _no_errors(other)
    assert len(other.image) == 1 + 8
    assert not other.button  # the Rebuild page of that session shows the running build, not the form
    _open(other, "5_Rebuild_index.py")
    assert any("Building" in m.value for m in other.markdown) and not other.button

    gate.set()
    assert job.wait(120) and job.error is None
    at.run()
    _no_errors(at)
    assert any(s.value.startswith("Built ") for s in at.success)
    summary = dict(zip(at.dataframe[0].value["what"], at.dataframe[0].value["count"]))
    assert summary["images embedded now"] == 0 and summary["items added"] == 0
    assert load_artifacts(workdir).build_id != before


def test_any_rebuild_failure_is_one_error_box(small_catalog, tmp_path, monkeypatch):
    from conftest import fast_build_config
    from filelock import FileLock

    import vibe.build.pipeline
    from vibe.build.jobs import latest_build

    workdir = tmp_path / "w"
    vibe.build.pipeline.build(fast_build_config(small_catalog, workdir))
    monkeypatch.setenv("VIBE_WORKDIR", str(workdir))
    monkeypatch.chdir(REPO)
    at = _open(AppTest.from_file(str(REPO / "Home.py"), default_timeout=TIMEOUT), "5_Rebuild_index.py")

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(vibe.build.pipeline, "train_heads", boom)
    at.button[0].click()
    at.run()
    assert latest_build(workdir).wait(60)
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "failed unexpectedly (RuntimeError: boom)" in at.error[0].value

    monkeypatch.undo()
    monkeypatch.setenv("VIBE_WORKDIR", str(workdir))
    monkeypatch.chdir(REPO)
    with FileLock(str(workdir / "build.lock")):  # a build of another process (the CLI) holds the workdir
        at.button[0].click()
        at.run()
        assert latest_build(workdir).wait(60)
    at.run()
    assert len(at.error) == 1 and "Another build is already running" in at.error[0].value


def test_an_upload_says_whether_match_1_is_the_same_product(app, monkeypatch):
    import io

    from PIL import Image

    from vibe.search.matcher import Matcher

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 240, 3), dtype=np.uint8)).save(buf, "PNG")
    at = _open(app, "1_Find_matches.py")
    for cut, verdict in ((0.9999, "no match"), (-1.0, "match")):  # the build's same-item cosine, set either side
        monkeypatch.setattr(Matcher, "same_photo_cosine", property(lambda self, cut=cut: cut))
        at.file_uploader[0].set_value((f"noise{cut}.png", buf.getvalue(), "image/png"))
        at.run()
        _no_errors(at)
        if verdict == "no match":
            assert [w for w in at.warning if w.value.startswith("Not sure match 1 is this very product")]
        else:
            assert [m for m in at.success if m.value.startswith("Match 1 is close enough")] and not at.warning


def test_an_upload_shows_the_other_products_tried_and_one_click_searches_one(app):
    import io

    from conftest import two_products_on_noise

    from vibe.util.files import content_hash

    buf = io.BytesIO()
    two_products_on_noise().save(buf, "PNG")
    at = _open(app, "1_Find_matches.py")
    at.file_uploader[0].set_value(("two.png", buf.getvalue(), "image/png"))
    at.run()
    _no_errors(at)
    assert [m for m in at.markdown if m.value.startswith("**Also in this photo**")]
    key = content_hash(buf.getvalue())[:12]
    buttons = [b for b in at.button if b.key and b.key.startswith(f"other-{key}-")]
    assert buttons and all(b.label == f"Search product {int(b.key.rsplit('-', 1)[1]) + 1}" for b in buttons)
    product = int(buttons[0].key.rsplit("-", 1)[1])
    buttons[0].click()
    at.run()
    _no_errors(at)
    assert [c for c in at.caption if c.value.startswith(f"searched as product {product + 1} of ")]
    assert not [m for m in at.markdown if m.value.startswith("**Also in this photo**")]  # one product searched


def test_catalogue_qa_lists_label_problems_and_duplicates_with_exports(app, built):
    from vibe.qa.labels import audit_labels

    at = _open(app, "4_Catalogue_QA.py")
    _no_errors(at)
    art = load_artifacts(built[0])
    expected = audit_labels(art, "item_type")
    trust = [m.value for m in [*at.warning, *at.caption] if "agree with" in m.value]  # how far to trust the suggestions
    assert trust and f"{expected.agreement:.0%} of the catalogue's item_type labels" in trust[0]
    assert bool([w for w in at.warning if "agree with" in w.value]) == (expected.agreement < 0.8)
    assert any(m.label == "item_type labels that look wrong" and m.value == f"about {expected.estimate:,}" for m in at.metric)
    shown = min(16, len(expected.shown))
    titles = [m.value for m in at.markdown if "→" in m.value]
    in_grid = [i for column in range(4) for i in range(column, shown, 4)]  # the page reads the 4-column grid by column
    assert titles[:shown] == [f"**{r.label} → {r.suggested}?**" for r in expected.shown.iloc[in_grid].itertuples()]
    at.toggle(key="qa-every").set_value(True)  # every disagreement, one click away
    at.run()
    assert len([m for m in at.markdown if "→" in m.value]) == min(16, len(expected.table))
    exports = [b for b in at.get("download_button")]
    assert len(exports) == 3
    at.slider(key=next(s.key for s in at.slider if s.label.startswith("How alike"))).set_value(0.9)  # the loosest
    at.run()
    _no_errors(at)
    from vibe.qa.duplicates import find_groups

    expected_groups = len(find_groups(art, 0.9))  # every pair the tiny backbone proposes, checked on the photos
    assert any(m.label.startswith("Groups of near-identical photos") and int(m.value) == expected_groups
               for m in at.metric)


def test_a_fix_accepted_on_the_page_is_applied_by_the_next_build_and_not_listed_again(small_catalog, tmp_path,
                                                                                      monkeypatch):
    import shutil

    from conftest import fast_build_config

    from vibe.build.pipeline import build
    from vibe.catalog.fixes import read_fixes
    from vibe.qa.labels import audit_labels

    root = tmp_path / "catalog"
    shutil.copytree(small_catalog, root)
    workdir = tmp_path / "w"
    build(fast_build_config(root, workdir, audit_folds=3))
    at = _session(workdir, monkeypatch, "4_Catalogue_QA.py")
    at.text_input(key="qa-who").set_value("asha")
    at.run()
    first, second = (m.value.strip("*?").split(" → ") for m in [m for m in at.markdown if "→" in m.value][:2])
    ids = [b.key.rsplit("-", 1)[1] for b in at.button if b.key and b.key.startswith("fix-accept-item_type-")][:2]
    at.button(key=f"fix-accept-item_type-{ids[0]}").click()
    at.run()
    _no_errors(at)
    at.button(key=f"fix-right-item_type-{ids[1]}").click()
    at.run()
    _no_errors(at)
    fixes = read_fixes(root).fixes
    assert fixes[["id", "old", "new", "action", "who"]].values.tolist() == [
        [int(ids[0]), first[0], first[1], "accepted", "asha"], [int(ids[1]), second[0], second[0], "right", "asha"]]
    keys = {b.key for b in at.button if b.key}
    assert f"fix-accept-item_type-{ids[0]}" not in keys and f"fix-accept-item_type-{ids[1]}" not in keys
    assert any(m.label == "Decided by the team" and m.value == "2" for m in at.metric)
    build(fast_build_config(root, workdir, audit_folds=3))  # the next build applies the accepted fix
    art = load_artifacts(workdir)
    assert art.items.set_index("id").at[int(ids[0]), "item_type"] == first[1]
    assert art.manifest["catalog"]["report"]["label_fixes"]["applied"] == 1
    listed = set(audit_labels(art, "item_type").table["id"])
    assert int(ids[1]) not in listed and int(ids[0]) not in listed  # marked right / fixed: never listed again
    at = _session(workdir, monkeypatch, "4_Catalogue_QA.py")
    _no_errors(at)
    assert any("applied 1 fixes and kept 1 labels confirmed right" in i.value for i in at.info)


def test_find_matches_searches_by_words(app):
    at = _open(app, "1_Find_matches.py")
    at.radio[0].set_value("Search by words")
    at.run()
    at.text_input[0].set_value("black shoes men")
    at.run()
    _no_errors(at)
    assert any("Read as:" in m.value and "colour = Black" in m.value for m in at.markdown)
    assert at.subheader[0].value.startswith("8 items for")
    assert len(at.image) == 8
    at.text_input[0].set_value("xyzzyq")  # nothing in the catalogue: said, not answered with arbitrary items
    at.run()
    _no_errors(at)
    assert [w for w in at.warning if w.value.startswith("Nothing in the catalogue matches")] and len(at.image) == 0


def _session(workdir, monkeypatch, page: str) -> AppTest:
    monkeypatch.setenv("VIBE_WORKDIR", str(workdir))
    monkeypatch.chdir(REPO)
    return _open(AppTest.from_file(str(REPO / "Home.py"), default_timeout=TIMEOUT), page)


def test_a_rebuild_from_the_page_repeats_the_current_build_and_asks_before_anything_unusual(small_catalog, tmp_path,
                                                                                              monkeypatch):
    from dataclasses import replace

    from conftest import fast_build_config

    from vibe.build.jobs import latest_build
    from vibe.build.pipeline import build
    from vibe.config import build_config_from_record

    workdir = tmp_path / "w"
    cfg = fast_build_config(small_catalog, workdir, subset="train")  # min class count 5, 40 head epochs, check 8...
    build(cfg)
    recorded = build_config_from_record(load_artifacts(workdir).manifest["config"])
    assert recorded == cfg
    at = _session(workdir, monkeypatch, "5_Rebuild_index.py")
    assert any("cannot be loaded here" in o for o in at.selectbox[0].options)  # fashion-clip, with no hub here
    at.selectbox[1].set_value("holdout")  # the holdout subset is for evaluation: it needs a confirmation
    at.button[0].click()
    at.run()
    _no_errors(at)
    assert latest_build(workdir) is None and any("holdout subset" in w.value for w in at.warning)
    at.button(key="cancel-rebuild").click()
    at.run()
    assert latest_build(workdir) is None and not at.warning
    at.selectbox[1].set_value("train")
    at.button[0].click()  # the current build again: nothing to confirm
    at.run()
    _no_errors(at)
    job = latest_build(workdir)
    assert job is not None and job.cfg == replace(cfg, workdir=workdir)  # every recorded setting, not the defaults
    assert job.wait(180) and job.error is None
    assert any("warm start" in line for line in job.lines)  # same settings: the heads continue from the previous build
    at.run()
    at.selectbox[0].set_value("vibe-mini")  # another backbone: everything is embedded and trained again
    at.button[0].click()
    at.run()
    assert latest_build(workdir).cfg.backbone == "tiny-random" and any("backbone changes" in w.value for w in at.warning)
    at.selectbox[0].set_value("tiny-random")
    at.selectbox[1].set_value("holdout")
    at.button[0].click()
    at.run()
    at.button(key="confirm-rebuild").click()  # asked, and confirmed
    at.run()
    _no_errors(at)
    assert latest_build(workdir).cfg.catalog.subset == "holdout"
    assert latest_build(workdir).wait(180)


def test_catalogue_qa_without_the_label_audit_still_shows_duplicates_and_head_accuracy_takes_two_class_heads(
        small_catalog, tmp_path, monkeypatch):
    from dataclasses import replace

    from conftest import fast_build_config

    from vibe.build.pipeline import build

    workdir = tmp_path / "w"
    cfg = fast_build_config(small_catalog, workdir, audit_folds=0)
    build(replace(cfg, heads=replace(cfg.heads, min_class_count=100)))  # gender: Men and Other; item_type: Other alone
    art = load_artifacts(workdir)
    assert len(art.heads.vocabs["gender"]) == 2 and len(art.heads.vocabs["item_type"]) == 1
    at = _session(workdir, monkeypatch, "4_Catalogue_QA.py")
    _no_errors(at)
    assert any("without the label audit" in i.value for i in at.info)
    assert any(m.label.startswith("Groups of near-identical photos") for m in at.metric)  # the second tab is there
    at = _open(at, "2_Head_accuracy.py")
    for head in ("item_type", "gender"):  # one class, two classes: nothing to choose on the slider
        at.selectbox[0].set_value(head)
        at.run()
        _no_errors(at)
        assert int(at.dataframe[1].value.to_numpy().sum()) == art.metrics["heads"][head]["n"]


def test_the_outfit_board_shows_the_matches_the_download_holds(built, tiny_encoder, monkeypatch):
    from vibe.search.matcher import Matcher

    workdir, _ = built
    art = load_artifacts(workdir)
    row = int(np.flatnonzero((art.items["slot"] == "top").to_numpy())[0])
    at = _session(workdir, monkeypatch, "1_Find_matches.py")
    at.radio[0].set_value("Pick a catalogue item")
    at.run()
    at.selectbox[0].set_value(row)
    at.get("segmented_control")[0].set_value("Style combo (mix & match)")
    for k in (3, 12):
        at.slider[0].set_value(k)
        at.run()
        _no_errors(at)
        ranks = sorted(int(c.value.strip("*").split(" · ")[0][1:]) for c in at.caption if c.value.startswith("**#"))
        assert ranks == list(range(1, k + 1)), ranks  # one card per match, numbered as in the download
        res = Matcher(art, tiny_encoder).find(item_id=int(art.items["id"].iat[row]), mode="combo", k=k)
        assert len(res.to_frame()) == k == sum(len(options) for options in res.outfit.values())


def test_merchandiser_pages_speak_without_formulas(app, small_catalog):
    import io

    from PIL import Image

    jargon = ("nats", "−ln", "-ln", "τ", "cosine ≥", "head is unsure", "is right 90 %")
    photo = io.BytesIO()  # a photo not in the catalogue: its filters come from the heads, with their reasons
    Image.open(sorted((small_catalog / "images").iterdir())[7]).convert("RGB").rotate(8, fillcolor="white").save(photo, "PNG")
    for page in ("1_Find_matches.py", "4_Catalogue_QA.py"):
        at = _open(app, page)
        if page.startswith("1"):
            at.file_uploader[0].set_value(("photo.png", photo.getvalue(), "image/png"))
            at.run()
        shown = [e.value for kind in ("markdown", "caption", "warning", "info") for e in at.get(kind)]
        assert not [t for t in shown for j in jargon if j in t], page
        if page.startswith("1"):
            assert any(t.startswith("**#1 · ") for t in shown)  # result cards carry their rank
            assert any(t.startswith("Not filtered on") for t in shown)  # the tiny heads are unsure: said in words


def test_an_upload_shows_its_products_and_another_one_can_be_searched(app, small_catalog):
    import io

    from PIL import Image

    from vibe.eval.heldout import scene
    from vibe.locate.proposals import Proposal
    from vibe.locate.query import tried

    products = [Image.open(p).convert("RGB") for p in sorted((small_catalog / "images").iterdir())[20:23]]
    shot = scene(products, 0, 3, "score")
    photo = io.BytesIO()
    shot.image.save(photo, "JPEG", quality=92)
    at = _open(app, "1_Find_matches.py")
    at.file_uploader[0].set_value(("three-products.jpg", photo.getvalue(), "image/jpeg"))
    at.run()
    _no_errors(at)
    picker = [json.loads(c.proto.json_args) for c in at.get("component_instance")]
    assert len(picker) == 1 and len(picker[0]["boxes"]) >= 2  # every product found, boxed on the photo
    # by default: the first proposals, the whole photo and the cut-out, the most catalogue-like kept, and the picker
    # shows the product that view came from (none picked: it was the whole photo or the cut-out)
    n = len(tried([Proposal(tuple(box), 0.0) for box in picker[0]["boxes"]]))
    assert any(c.value.startswith("searched as") and f"of the {n + 2} views tried" in c.value for c in at.caption)
    kept = next(c.value for c in at.caption if c.value.startswith("searched as"))
    shown = picker[0]["picked"]
    assert (shown == -1) if "product " not in kept else kept.startswith(f"searched as product {shown + 1} of")
    other = "1" if shown == 1 else "2"  # a product the default search did not keep
    at.get("segmented_control")[1].set_value(other)  # [0] is the mode
    at.run()
    _no_errors(at)
    assert any(c.value.startswith(f"searched as product {other} of") for c in at.caption)
    assert [json.loads(c.proto.json_args)["picked"] for c in at.get("component_instance")] == [int(other) - 1]
    assert len(at.image) == 1 + 8  # the view searched and the results


def test_batch_match_lists_every_photo_with_its_top_matches_and_offers_the_csv(app, small_catalog):
    import io
    import zipfile

    at = _open(app, "6_Batch_match.py")
    assert at.info  # nothing uploaded yet: says what to do
    photos = sorted((small_catalog / "images").iterdir())[:4]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in photos[2:]:
            z.write(p, f"collection/{p.name}")
    at.file_uploader[0].set_value([(photos[0].name, photos[0].read_bytes(), "image/jpeg"),
                                   ("broken.jpg", b"not a photo", "image/jpeg"),
                                   ("more.zip", buf.getvalue(), "application/zip")])
    at.run()
    _no_errors(at)
    at.button[0].click()
    at.run()
    _no_errors(at)
    photos_n, matched, no_match, unreadable = (int(m.value) for m in at.metric)
    assert photos_n == 4 and unreadable == 1 and matched + no_match == 3  # the broken file: one row with its error
    table = at.dataframe[0].value
    assert len(table) == 4 and set(table["query"]) == {photos[0].name, "broken.jpg", f"more.zip/collection/{photos[2].name}",
                                                      f"more.zip/collection/{photos[3].name}"}
    own = table[table["query"] == photos[0].name].iloc[0]
    assert own["photo"].startswith("data:image/jpeg") and own["match_1"].startswith("data:image/jpeg")
    assert int(own["id_1"]) == int(photos[0].stem)  # a catalogue photo's own item is its first match
    assert "not an image" in table[table["query"] == "broken.jpg"].iloc[0]["error"]
    assert at.get("download_button")
    held = at.session_state["batch"]["rows"]  # what the CSV download writes: ids stay whole beside the error row
    assert str(held["id"].dtype) == "Int64" and str(held["rank"].dtype) == "Int64"
