import json
import shutil

import numpy as np
import pytest

from vibe.artifacts import load_artifacts
from vibe.config import HEADS
from vibe.errors import VibeError
from vibe.retrieve import Matcher


@pytest.fixture(scope="module")
def matcher(built, tiny_encoder):
    workdir, _ = built
    return Matcher(load_artifacts(workdir), tiny_encoder)


def test_the_query_never_matches_itself(matcher, small_catalog, tmp_path):
    items = matcher.art.items
    for row in range(0, len(items), 37):
        item_id = int(items["id"].iat[row])
        for mode in ("same", "combo"):
            res = matcher.find(item_id=item_id, mode=mode, k=5)
            assert item_id not in [m.id for m in res.matches]
            assert len(res.matches) == 5
    # the same photo uploaded under another name is recognised by its bytes, and reuses the stored embedding
    path = small_catalog / items["path"].iat[0]
    copy = tmp_path / "upload.jpg"
    shutil.copy(path, copy)
    res = matcher.find(copy, mode="same", k=5)
    assert int(items["id"].iat[0]) not in [m.id for m in res.matches]


def test_same_mode_filters_then_relaxes_in_order(matcher):
    codes = {h: matcher.codes[h] for h in HEADS}
    emb = matcher.art.clip.vector(0)
    res = matcher.search(emb, mode="same", k=3)
    if not res.relaxed:  # every match satisfies every applied filter
        for m in res.matches:
            assert m.labels["item_type"] == res.filters["item_type"]
            assert m.labels["colour"] == res.filters["colour"]
    # force relaxation: ask for more items than the rarest item type holds
    counts = np.bincount(codes["item_type"][codes["item_type"] >= 0])
    rare = int(np.argmin(np.where(counts > 0, counts, 10**9)))
    k = int(counts[rare]) + 2
    res = matcher.search(emb, mode="same", k=k, known={"item_type": rare})
    assert res.relaxed[-1] == "item_type"
    assert res.relaxed == ["gender", "colour", "item_type"][: len(res.relaxed)]
    assert "item_type" not in res.filters
    assert len(res.matches) == k


def test_relaxation_reports_only_what_it_relaxed(matcher):
    emb = matcher.art.clip.vector(5)
    item_type = int(matcher.codes["item_type"][5])
    n_type = int((matcher.codes["item_type"] == item_type).sum())
    res = matcher.search(emb, mode="same", k=min(3, n_type - 1), known={"item_type": item_type}, exclude=[5])
    assert "item_type" not in res.relaxed and res.filters["item_type"] == res.query_labels["item_type"]
    assert all(m.labels["item_type"] == res.filters["item_type"] or res.filters["item_type"] == "Other" for m in res.matches)


def test_combo_returns_other_item_types_capped_per_type(matcher):
    for row in (1, 50, 120):
        res = matcher.find(item_id=int(matcher.art.items["id"].iat[row]), mode="combo", k=6, per_type=2)
        own = res.query_labels["item_type"]
        types = [m.labels["item_type"] for m in res.matches]
        assert own not in types
        assert len(res.matches) == 6
        if "style" not in res.relaxed:
            assert all(m.labels["style"] == res.filters["style"] for m in res.matches)
        distinct = len(set(types))
        assert max(types.count(t) for t in set(types)) <= 2 or distinct < 3


def test_results_serialise_to_json(matcher):
    res = matcher.find(item_id=int(matcher.art.items["id"].iat[3]), mode="same", k=2)
    data = json.loads(json.dumps(res.to_dict()))
    assert set(data["predictions"]) == set(HEADS) and len(data["matches"]) == 2


def test_an_index_built_with_another_backbone_is_refused(built, tiny_clip_dir):
    from vibe import Encoder

    workdir, _ = built
    with pytest.raises(VibeError, match=r"built with backbone 'tiny-random'.*python -m vibe build"):
        Matcher(load_artifacts(workdir), Encoder(str(tiny_clip_dir)))


def test_a_truncated_or_foreign_artifact_is_detected(built, tmp_path):
    workdir, _ = built
    copy = tmp_path / "w"
    shutil.copytree(workdir, copy, symlinks=True)
    target = (copy / "current" / "clip.faiss")
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(VibeError, match="truncated or changed.*python -m vibe build"):
        load_artifacts(copy)
    manifest = copy / "current" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"vibe-artifacts-1"', '"vibe-artifacts-0"'))
    with pytest.raises(VibeError, match="another version of vibe"):
        load_artifacts(copy)
    with pytest.raises(VibeError, match="No built index"):
        load_artifacts(tmp_path / "empty")
