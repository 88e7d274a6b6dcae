import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from vibe.build.heads import train_heads
from vibe.build.style import train_projection
from vibe.catalog.triplets import mine_triplets, read_triplets_csv
from vibe.config import HEADS, HeadsConfig, ProjectionConfig
from vibe.errors import VibeError
from vibe.eval.metrics import evaluate_head
from vibe.models.heads import build_vocabularies, encode_labels, load_heads, save_heads
from vibe.models.style import load_projection, save_projection

SLOTS = {"Shirts": "top", "Jeans": "bottom", "Watches": "watch", "Heels": "footwear", "Rare1": "top", "Rare2": "bottom"}


def _items(n=400, seed=0):
    rng = np.random.default_rng(seed)
    types = rng.choice(list(SLOTS), n, p=[.3, .3, .2, .18, .01, .01])
    return pd.DataFrame({
        "id": np.arange(n) + 1000, "name": "x", "path": [f"images/{i + 1000}.jpg" for i in range(n)],
        "item_type": types,
        "gender": rng.choice(["Men", "Women", "Unisex"], n),
        "colour": rng.choice(["Blue", "Black", None], n, p=[.5, .45, .05]),
        "season": rng.choice(["Summer", "Fall"], n),
        "style": rng.choice(["Casual", "Formal", "Sports"], n),
        "slot": [SLOTS[t] for t in types],
    })


def test_rare_classes_merge_into_other_and_missing_labels_are_ignored():
    items = _items()
    vocabs = build_vocabularies(items, min_count=10)
    assert vocabs["item_type"][-1] == "Other" and "Rare1" not in vocabs["item_type"]
    codes = encode_labels(items, vocabs)
    other = vocabs["item_type"].index("Other")
    assert (codes["item_type"][items["item_type"].isin(["Rare1", "Rare2"]).to_numpy()] == other).all()
    assert (codes["colour"][items["colour"].isna().to_numpy()] == -1).all()


def test_heads_learn_separable_labels_and_roundtrip_through_safetensors(tmp_path):
    items = _items()
    vocabs = build_vocabularies(items, 10)
    codes = encode_labels(items, vocabs)
    rng = np.random.default_rng(0)
    # embeddings that carry the labels: one random direction per (head, class)
    emb = rng.normal(scale=0.1, size=(len(items), 64)).astype(np.float32)
    for h in HEADS:
        directions = rng.normal(size=(len(vocabs[h]), 64))
        emb += np.where(codes[h][:, None] >= 0, directions[codes[h]], 0)
    heads, info = train_heads(emb, codes, vocabs, HeadsConfig(epochs=200, patience=10))
    pred = {h: p.argmax(1) for h, p in heads.predict_proba(emb).items()}
    assert (pred["item_type"] == codes["item_type"]).mean() > 0.9
    save_heads(tmp_path / "h.safetensors", heads)
    loaded = load_heads(tmp_path / "h.safetensors")
    assert loaded.vocabs == vocabs
    np.testing.assert_allclose(loaded.predict_proba(emb[:5])["style"], heads.predict_proba(emb[:5])["style"], atol=1e-6)


def test_metrics_are_scikit_learns():
    t = np.array([0, 0, 1, 1, 2, -1])
    p = np.array([0, 1, 1, 1, 0, 2])
    m = evaluate_head(t, p, ["a", "b", "c"])
    known = t >= 0
    assert m["n"] == 5
    assert m["accuracy"] == accuracy_score(t[known], p[known])
    assert m["macro_f1"] == pytest.approx(f1_score(t[known], p[known], average="macro"))
    assert m["confusion"] == confusion_matrix(t[known], p[known]).tolist()
    assert sum(map(sum, m["confusion"])) == 5


def test_mined_triplets_follow_the_rules():
    items = _items(600)
    from vibe.catalog.rules import Compatibility, goes_with

    compat = Compatibility(items)
    trip = mine_triplets(compat, compat.outfit_anchors(np.arange(len(items))), np.arange(len(items)), np.random.default_rng(0), 3)
    assert len(trip) > 1000
    rec = items.to_dict("records")
    assert all(goes_with(rec[a], rec[p]) for a, p, _ in trip)  # a complementary slot, same usage, gender, season
    assert not any(goes_with(rec[a], rec[n]) for a, _, n in trip)
    same_slot = np.mean([rec[a]["slot"] == rec[n]["slot"] for a, _, n in trip])
    assert 0.3 < same_slot < 0.7  # half the negatives are of the anchor's own slot, half clash in a complementary one
    assert "Rare1" in {rec[a]["item_type"] for a, _, _ in trip} | {rec[p]["item_type"] for _, p, _ in trip}


def test_projection_trains_to_separate_styles_and_roundtrips(tmp_path):
    from vibe.catalog.rules import Compatibility
    from vibe.eval.ranking import style_triplets, triplet_accuracy
    from vibe.models.style import ProjectionHead

    items = _items(600)
    vocabs = build_vocabularies(items, 1)
    codes = encode_labels(items, vocabs)
    rng = np.random.default_rng(0)
    # embeddings that carry usage, gender and season weakly, under noise: what the style space has to pull out
    signal = np.concatenate([np.eye(8, dtype=np.float32)[codes[h]] for h in ("style", "gender", "season")], 1)
    emb = rng.normal(size=(600, 48)).astype(np.float32)
    emb[:, :24] += 1.5 * signal
    compat, train, held = Compatibility(items), np.arange(400), np.arange(400, 600)
    head, info = train_projection(emb, lambda e: mine_triplets(compat, compat.outfit_anchors(train), train, rng, 4),
                                  ProjectionConfig(dim=16, epochs=15))
    # held-out anchors, triplets by the true labels (the positive goes with the anchor, the negative clashes)
    test = style_triplets(compat, held, np.arange(600), np.random.default_rng(1))
    assert len(test) > 300
    trained = triplet_accuracy(head.project(emb), test)
    untrained = triplet_accuracy(ProjectionHead(48, 16).eval().project(emb), test)
    assert trained >= 0.7 and trained > untrained + 0.15, (trained, untrained)  # 0.77 and 0.53 here
    z = head.project(emb)
    assert z.shape == (600, 16)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, rtol=1e-5)
    save_projection(tmp_path / "p.safetensors", head)
    np.testing.assert_allclose(load_projection(tmp_path / "p.safetensors").project(emb[:3]), z[:3], atol=1e-6)


def test_curated_triplets_csv_resolves_ids_and_lists_bad_rows(tmp_path):
    items = _items(10)
    (tmp_path / "t.csv").write_text("anchor,positive,negative\n1000,1001,1002\nimages/1003.jpg,1004,1005\n")
    assert read_triplets_csv(tmp_path / "t.csv", items, tmp_path).tolist() == [[0, 1, 2], [3, 4, 5]]
    (tmp_path / "bad.csv").write_text("anchor,positive,negative\n1000,1001,1002\n1000,99999,1002\n../../etc/passwd,1001,1002\n")
    with pytest.raises(VibeError, match=r"2 rows .*line 3: 1000, 99999, 1002; line 4: \.\./\.\./etc/passwd"):
        read_triplets_csv(tmp_path / "bad.csv", items, tmp_path)
    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    with pytest.raises(VibeError, match="anchor,positive,negative"):
        read_triplets_csv(tmp_path / "cols.csv", items, tmp_path)


def test_a_pickle_is_never_loaded_as_a_checkpoint(tmp_path):
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('code ran')",))

    (tmp_path / "h.safetensors").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(VibeError, match="not a valid heads checkpoint"):
        load_heads(tmp_path / "h.safetensors")
    with pytest.raises(VibeError, match="not a valid projection checkpoint"):
        load_projection(tmp_path / "h.safetensors")


def test_warm_start_copies_classes_by_name_whatever_their_position():
    import torch

    from vibe.models.heads import AttributeHeads

    old = AttributeHeads(4, {h: ["a", "b"] for h in HEADS})
    new = AttributeHeads(4, {h: ["b", "c", "a"] for h in HEADS})
    assert new.warm_from(old) == 2 * len(HEADS)
    for h in HEADS:
        assert torch.equal(new.heads[h].weight[0], old.heads[h].weight[1])  # b
        assert torch.equal(new.heads[h].weight[2], old.heads[h].weight[0])  # a
