"""`python -m vibe bench --json` on the tiny configuration: it runs and prints every documented key (no timing asserts)."""
import json
import subprocess
import sys

from conftest import REPO
from vibe.bench import KEYS


def test_bench_quick_json_prints_every_key():
    r = subprocess.run([sys.executable, "-m", "vibe", "bench", "--quick", "--json"], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(out) == {*KEYS, "machine", "details"}
    assert out["machine"]["runtime"] and out["machine"]["runtime_why"]  # which path ran, and why
    assert all(isinstance(out[k], (int, float)) and out[k] == out[k] for k in KEYS)  # numbers, not NaN
    assert 0 < out["fast_path_min_cosine"] <= 1.0001 and out["peak_rss_gb"] > 0
    assert out["machine"]["cores"] >= 1 and out["machine"]["torch"]
