import numpy as np
import pytest

from vibe.vectors import l2_normalize
from vibe.index import VectorIndex


@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    return l2_normalize(rng.normal(size=(2000, 64)))


def brute_force(vectors, q, k, allowed=None):
    scores = vectors @ q
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    order = np.argsort(-scores, kind="stable")[:k]
    return order[np.isfinite(scores[order])], scores[order][np.isfinite(scores[order])]


def test_faiss_equals_brute_force_numpy(vectors):
    index = VectorIndex.build(vectors)
    for q in vectors[:20]:
        rows, scores = index.search(q, 10)
        ref_rows, ref_scores = brute_force(vectors, q, 10)
        np.testing.assert_array_equal(rows, ref_rows)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_filtered_search_equals_brute_force_numpy(vectors):
    index = VectorIndex.build(vectors)
    rng = np.random.default_rng(1)
    for q in vectors[:20]:
        allowed = rng.random(len(vectors)) < 0.05
        rows, scores = index.search(q, 10, allowed)
        ref_rows, ref_scores = brute_force(vectors, q, 10, allowed)
        np.testing.assert_array_equal(rows, ref_rows)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
        assert allowed[rows].all()


def test_filter_with_fewer_rows_than_k_returns_only_those(vectors):
    allowed = np.zeros(len(vectors), bool)
    allowed[[3, 99, 1500]] = True
    rows, _ = VectorIndex.build(vectors).search(vectors[0], 10, allowed)
    assert sorted(rows) == [3, 99, 1500]
    assert len(VectorIndex.build(vectors).search(vectors[0], 5, np.zeros(len(vectors), bool))[0]) == 0


def test_save_load_roundtrip(vectors, tmp_path):
    index = VectorIndex.build(vectors)
    index.save(tmp_path / "x.faiss")
    loaded = VectorIndex.load(tmp_path / "x.faiss")
    np.testing.assert_array_equal(loaded.vectors(), vectors)
