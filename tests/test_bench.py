"""`python -m vibe bench --json` on the tiny configuration: it runs, says each figure as it is measured and prints every
documented key (no timing asserts); without the optional Ray it completes, with the Ray figure marked skipped."""
import json
import subprocess
import sys

from conftest import REPO

from vibe.bench.run import KEYS


def _bench(*prelude: str):
    code = "; ".join([*prelude, "from vibe.cli import main", "raise SystemExit(main(['bench', '--quick', '--json']))"])
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def test_bench_quick_json_prints_every_key():
    out, said = _bench()
    assert set(out) == {*KEYS, "machine", "details", "skipped", "failed"} and not out["skipped"] and not out["failed"]
    assert "bench: query" in said and "query_p50_ms" in said  # each figure is said as it is measured
    assert out["machine"]["runtime"] and out["machine"]["runtime_why"]  # which path ran, and why
    assert all(isinstance(out[k], (int, float)) and out[k] == out[k] for k in KEYS)  # numbers, not NaN
    assert 0 < out["fast_path_min_cosine"] <= 1.0001 and out["peak_rss_gb"] > 0
    assert out["machine"]["cores"] >= 1 and out["machine"]["torch"] and out["machine"]["cpu"]
    # the server under load: every bad input a 4xx and every photo a 200, also while a rebuild is published
    assert out["serve_unexpected_responses"] == 0 and out["serve_rebuild_failed_requests"] == 0
    assert out["details"]["serve"]["rebuild"]["swapped"] and out["details"]["match"]["photos"] == 16


def test_without_ray_the_bench_completes_and_marks_the_ray_figure_skipped():
    out, said = _bench("import sys", "sys.modules['ray'] = None")  # as if Ray were not installed: `import ray` fails
    assert out["ray_embed_vs_local"] is None and "requirements-scale.txt" in out["skipped"]["ray"]
    assert not out["failed"] and "ray will be skipped" in said.splitlines()[0] + said  # said before the long stages
    assert all(isinstance(out[k], (int, float)) for k in KEYS if k != "ray_embed_vs_local")
