"""The CLI end to end on real images with the tiny backbone: build -> find (both modes) -> eval, and its errors."""
import json
import re
import subprocess
import sys

import pytest
from conftest import REPO

from vibe.catalog.reader import load_catalog
from vibe.cli import main
from vibe.config import HEADS, CatalogConfig

FAST = ["--backbone", "tiny-random", "--head-epochs", "30", "--projection-epochs", "2", "--min-class-count", "3", "--check", "8",
        "--audit-folds", "0", "--quiet"]


@pytest.fixture(scope="module")
def cli_built(small_catalog, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cli")
    assert main(["build", "--data", str(small_catalog), "--subset", "train", "--workdir", str(workdir), *FAST]) == 0
    return workdir


def test_build_find_eval(cli_built, small_catalog, capsys):
    capsys.readouterr()
    outside = load_catalog(CatalogConfig(root=small_catalog, subset="holdout"))
    image = small_catalog / outside.items["path"].iat[0]
    for mode in ("same", "combo"):
        assert main(["find", str(image), "--mode", mode, "-k", "4", "--json", "--workdir", str(cli_built)]) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["mode"] == mode and len(res["matches"]) == 4
        assert set(res["predictions"]) == set(HEADS)
        assert all({"id", "name", "labels", "score"} <= set(m) for m in res["matches"])
        assert 0 <= res["predictions"]["item_type"]["confidence"] <= 1
    assert main(["find", str(image), "--workdir", str(cli_built)]) == 0
    text = capsys.readouterr().out
    assert "predicted attributes:" in text and "same mode, filters:" in text and text.count("\n") >= 10

    assert main(["eval", "--data", str(small_catalog), "--subset", "holdout", "--k", "3", "--json", "--workdir", str(cli_built)]) == 0
    captured = capsys.readouterr()
    scores = json.loads(captured.out)
    assert set(scores) == {"n_queries", "heads", "retrieval"}
    assert scores["n_queries"] == len(outside)
    assert set(scores["heads"]) == set(HEADS)
    assert all(set(m) == {"accuracy", "macro_f1"} and 0 <= m["accuracy"] <= 1 for m in scores["heads"].values())
    r = scores["retrieval"]
    assert {"same", "combo", "reshoot", "neighbours"} <= set(r)
    assert all(r[m]["k"] == 3 and 0 <= r[m]["precision"] <= 1 for m in ("same", "combo"))
    from vibe.eval.reshoot import CHANGES

    rs = r["reshoot"]
    assert rs["n_originals"] == len(outside) and rs["index_size"] == len(load_catalog(small_catalog)) and rs["k"] == 10
    for mode in ("same", "embedding"):
        assert set(rs[mode]["per_change"]) == set(CHANGES)
        assert all(0 <= rs[mode][key] <= 1 for key in ("recall@1", "recall@5", "mrr@10"))
        assert rs[mode]["recall@1"] <= rs[mode]["recall@5"]
        assert sum(c["n"] for c in rs[mode]["per_change"].values()) == len(outside) * len(CHANGES)
    assert 0 <= r["neighbours"]["type_and_colour"] <= r["neighbours"]["type"] <= 1
    assert "are also in the built index" not in captured.err
    assert "report saved to" in captured.err
    saved = json.loads(next(cli_built.glob("builds/*/evals/*.json")).read_text())
    assert saved["scores"] == scores and isinstance(saved["worst"], list)


def test_a_rebuild_embeds_nothing_new(cli_built, small_catalog, capsys):
    capsys.readouterr()
    assert main(["build", "--data", str(small_catalog), "--subset", "train", "--workdir", str(cli_built), *FAST]) == 0
    captured = capsys.readouterr()
    assert "embedded 0 images" in captured.out and "0 added, 0 removed, 0 changed" in captured.out
    assert "warm start" in captured.err


def _run(*args):
    return subprocess.run([sys.executable, "-m", "vibe", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_user_errors_are_one_line_without_traceback(cli_built, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    cases = [
        ("find", str(tmp_path / "missing.jpg"), "--workdir", str(cli_built)),
        ("find", str(tmp_path / "notes.txt"), "--workdir", str(cli_built)),
        ("find", "--item", "1", "--workdir", str(tmp_path / "nothing-built")),
        ("status", "--workdir", str(tmp_path / "nothing-built")),
        ("build", "--data", "data/sample", "--engine", "ray", "--ray-address", "ray://head:10001", "--workdir", str(tmp_path / "w")),
        ("build", "--data", str(tmp_path / "no-such-folder"), "--backbone", "tiny-random", "--workdir", str(tmp_path / "w")),
    ]
    for args in cases:
        r = _run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, r.stderr
    assert not (tmp_path / "w").exists()  # a build given a wrong --data leaves no workdir behind
    assert not (tmp_path / "nothing-built").exists()  # nor does a search of one never built


def test_a_missing_or_unreadable_photo_fails_before_torch_or_the_model_load(cli_built, tmp_path):
    code = ("import sys\nfrom vibe.cli import main\nrc = main(sys.argv[1:])\n"
            "print(rc, 'torch' in sys.modules, 'faiss' in sys.modules)")
    for name in ("missing.jpg", "notes.jpg"):
        if name == "notes.jpg":
            (tmp_path / name).write_text("not a photo")
        r = subprocess.run([sys.executable, "-c", code, "find", str(tmp_path / name), "--workdir", str(cli_built)],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
        assert r.stdout.split() == ["2", "False", "False"], r.stderr
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
        assert "Pillow" not in r.stderr


def test_progress_in_a_log_is_plain_lines(small_catalog, tmp_path):
    r = _run("build", "--data", str(small_catalog), "--backbone", "tiny-random", "--workdir", str(tmp_path / "w"),
             "--head-epochs", "5", "--projection-epochs", "2", "--min-class-count", "3", "--audit-folds", "0", "--check", "8")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    progress = [ln for ln in r.stderr.splitlines() if ln.startswith(("embed: ", "heads: ", "projection: "))]
    embed = [ln for ln in progress if ln.startswith("embed: ")]
    n = int(embed[0].split("/")[1])  # distinct photos of the 300 items
    assert embed[0] == f"embed: 0/{n}" and embed[-1] == f"embed: {n}/{n}" and 290 <= n <= 300 and "projection: 2/2" in progress
    assert f"embedding: {n} of 300 photos are new to the cache" in r.stderr  # why 300 items become n to embed
    for stage in ("embed", "heads", "projection"):
        done = [int(ln.split(": ")[1].split("/")[0]) for ln in progress if ln.startswith(stage + ": ")]
        total = int(next(ln for ln in progress if ln.startswith(stage + ": ")).split("/")[1])
        assert len(done) <= 12  # the first, each tenth, the last: a log, not a flood
        assert all(b - a <= total // 10 + 1 for a, b in zip(done[:-2], done[1:-1]))  # no jump of more than a tenth
    assert re.search(r"trained the heads for \d+ epochs", r.stderr)  # early stopping is said, not a leap to the end


def test_every_command_has_help():
    for cmd in ("build", "find", "eval", "status", "train-backbone", "bench"):
        r = _run(cmd, "--help")
        assert r.returncode == 0 and "usage:" in r.stdout


def test_build_with_a_curated_triplets_csv(small_catalog, tmp_path, capsys):
    ids = load_catalog(small_catalog).items["id"].tolist()
    csv = tmp_path / "triplets.csv"
    csv.write_text("anchor,positive,negative\n" + "".join(f"{ids[i]},{ids[i + 1]},{ids[i + 2]}\n" for i in range(0, 60, 3)))
    assert main(["build", "--data", str(small_catalog), "--workdir", str(tmp_path / "w"), "--triplets", str(csv), *FAST]) == 0
    assert "triplets: 20 curated" in capsys.readouterr().err


def test_an_unknown_reshoot_change_is_refused_before_any_work(cli_built, small_catalog):
    r = _run("eval", "--data", str(small_catalog), "--subset", "holdout", "--changes", "crop,typo", "--workdir", str(cli_built))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: unknown re-shoot change(s) 'typo'") and "busy" in r.stderr
    assert "backbone:" not in r.stderr  # refused before the catalogue, the model and the embedding pass


def test_log_progress_shows_each_tenth_of_a_stage():
    import io

    from vibe.util.progress import LineProgress

    out = io.StringIO()
    report = LineProgress(out, every=3600)
    for done in range(301):  # a fast stage: no line would be due by time
        report("heads", done, 300)
    shown = [int(line.split(": ")[1].split("/")[0]) for line in out.getvalue().splitlines()]
    assert shown == [0, 30, 60, 90, 120, 150, 180, 210, 240, 270, 300]


def test_find_names_the_other_products_it_tried_and_how_to_search_one(cli_built, tmp_path, capsys):
    from conftest import two_products_on_noise

    path = tmp_path / "two.png"
    two_products_on_noise().save(path)
    capsys.readouterr()
    assert main(["find", str(path), "--json", "--workdir", str(cli_built)]) == 0
    others = json.loads(capsys.readouterr().out)["query_view"]["others"]
    assert others and all({"proposal", "box", "id", "name", "path", "score", "verdict"} <= set(o) for o in others)
    assert main(["find", str(path), "--workdir", str(cli_built)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("also in this photo:")]
    assert len(lines) == len(others)
    for line, o in zip(lines, others):
        n = o["proposal"] + 1
        assert f"product {n}, nearest {o['id']} {o['name']} ({o['score']:.3f}" in line and f"--product {n})" in line
    assert main(["find", str(path), "--product", str(others[0]["proposal"] + 1), "--json", "--workdir", str(cli_built)]) == 0
    assert json.loads(capsys.readouterr().out)["query_view"]["proposal"] == others[0]["proposal"]  # the hint works
