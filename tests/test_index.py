import numpy as np
import pytest

from vibe.store.index import VectorIndex
from vibe.util.vectors import l2_normalize


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


@pytest.mark.parametrize("share", [0.05, 0.8])  # a narrow filter and a wide one
@pytest.mark.parametrize("scanned_first", [False, True])  # the query's scores kept from its unfiltered search
def test_filtered_search_equals_brute_force_numpy(vectors, share, scanned_first):
    index = VectorIndex.build(vectors)
    rng = np.random.default_rng(1)
    for q in vectors[:20]:
        allowed = rng.random(len(vectors)) < share
        if scanned_first:
            index.search(q, 10)
        rows, scores = index.search(q, 10, allowed)
        ref_rows, ref_scores = brute_force(vectors, q, 10, allowed)
        np.testing.assert_array_equal(rows, ref_rows)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
        assert allowed[rows].all()


def test_exact_search_of_duplicate_photos_keeps_the_lowest_rows_whatever_the_thread_searched_before(vectors):
    """Identical vectors (a photo in the catalogue twice) tie: the lowest rows come first and are the ones kept at the
    k-th place, whether the query's scores were kept from an earlier search or not."""
    rng = np.random.default_rng(2)
    dup = vectors[rng.integers(0, 40, 600)]
    for q in dup[:10]:
        allowed = rng.random(len(dup)) < 0.3
        for k in (1, 4, 12):
            expected = brute_force(dup, q, k, allowed)
            cold = VectorIndex.build(dup).search(q, k, allowed)
            index = VectorIndex.build(dup)
            index.search(q, k)
            kept = index.search(q, k, allowed)
            for rows, scores in (cold, kept):
                np.testing.assert_array_equal(rows, expected[0])
                np.testing.assert_allclose(scores, expected[1], atol=1e-6)
            np.testing.assert_array_equal(index.search(q, k)[0], brute_force(dup, q, k)[0])


def test_a_filter_of_another_length_is_one_clear_error_and_a_filtered_out_row_never_comes_back():
    import faiss

    from vibe.errors import VibeError

    vectors = np.eye(4, dtype=np.float32)
    vectors[1, 1] = -np.inf  # an allowed row that scores -inf must not let a filtered-out one (row 0) in
    raw = faiss.IndexFlatIP(4)
    raw.add(vectors)
    index = VectorIndex(raw)
    allowed = np.array([False, True, True, True])
    rows, _ = index.search(np.ones(4), 3, allowed)
    assert sorted(rows) == [1, 2, 3]
    with pytest.raises(VibeError, match="filter of 3 rows"):
        index.search(np.ones(4), 2, np.ones(3, bool))


def test_a_query_of_another_dimension_is_one_clear_error_and_an_index_copies(vectors):
    import copy
    import pickle

    from vibe.errors import VibeError

    index = VectorIndex.build(vectors)
    with pytest.raises(VibeError, match="32-D query cannot search a 64-D index"):
        index.search(vectors[0][:32], 5)
    index.search(vectors[0], 5)
    for twin in (copy.deepcopy(index), pickle.loads(pickle.dumps(index))):
        np.testing.assert_array_equal(twin.search(vectors[0], 5)[0], brute_force(vectors, vectors[0], 5)[0])


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


def test_auto_is_exact_up_to_the_limit_and_ivf_can_be_forced_with_filters_still_in_faiss(vectors, tmp_path, monkeypatch):
    import vibe.store.index

    assert VectorIndex.build(vectors).kind == "exact"
    monkeypatch.setattr(vibe.store.index, "EXACT_MAX", 1000)  # the size rule, without building a 200k-vector index
    auto = VectorIndex.build(vectors)
    assert auto.kind == "ivf" and auto.describe()["faiss"].startswith("IndexIVFScalarQuantizer")
    forced = VectorIndex.build(vectors[:500], "ivf")
    assert forced.kind == "ivf" and VectorIndex.build(vectors, "exact").kind == "exact"

    # clustered data, as embeddings are: the approximate index finds most true neighbours, filtered ones too
    rng = np.random.default_rng(2)
    centres = l2_normalize(rng.normal(size=(40, 64)))
    data = l2_normalize(centres[rng.integers(0, 40, 4000)] + rng.normal(scale=0.15, size=(4000, 64)))
    ivf = VectorIndex.build(data, "ivf")
    allowed = rng.random(len(data)) < 0.3
    hits = []
    for q in data[:30]:
        rows, _ = ivf.search(q, 10, allowed)
        assert allowed[rows].all()  # the selector, not a post-filter
        hits.append(len(set(rows) & set(brute_force(data, q, 10, allowed)[0])) / 10)
    assert np.mean(hits) >= 0.8
    ivf.save(tmp_path / "ivf.faiss")
    again = VectorIndex.load(tmp_path / "ivf.faiss")
    assert again.kind == "ivf" and again.describe() == ivf.describe()
    np.testing.assert_allclose(again.vector(7), data[7], atol=0.02)  # 8-bit codes: close, not equal


def test_a_rare_filter_on_an_ivf_index_still_gets_k_items():
    rng = np.random.default_rng(5)
    centres = l2_normalize(rng.normal(size=(64, 32)))
    data = l2_normalize(centres[rng.integers(0, 64, 6000)] + rng.normal(scale=0.1, size=(6000, 32)))
    ivf = VectorIndex.build(data, "ivf", nprobe=1)  # one inverted list looked at per query: the rare items lie elsewhere
    allowed = np.zeros(len(data), dtype=bool)
    allowed[rng.choice(len(data), 40, replace=False)] = True
    for q in data[:10]:
        rows, scores = ivf.search(q, 10, allowed)
        assert len(rows) == 10 and allowed[rows].all() and (np.diff(scores) <= 1e-6).all()
        assert len(set(rows) & set(brute_force(data, q, 10, allowed)[0])) >= 8  # 8-bit codes may swap near ties
