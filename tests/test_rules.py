"""Domain rules live in one place (vibe/rules.py); these pin them for retrieval, mining and evaluation alike."""
import numpy as np

from vibe.catalog.rules import QueryFilter, gender_compatible, relax_order


def test_gender_compatibility_is_one_rule_for_labels_and_arrays():
    assert gender_compatible("Men", "Men") and gender_compatible("Women", "Unisex") and gender_compatible("Unisex", "Boys")
    assert not gender_compatible("Men", "Women") and not gender_compatible("Boys", "Girls") and not gender_compatible("Men", "Boys")
    # an unknown gender is no evidence against a match, on either side
    assert gender_compatible(None, "Women") and gender_compatible("Men", None) and gender_compatible(float("nan"), "Men")
    a = np.array(["Men", "Women", "Unisex", None], dtype=object)
    assert gender_compatible(a, "Men").tolist() == [True, False, True, True]
    assert gender_compatible(a, a[::-1]).tolist() == [True, True, True, True]
    assert gender_compatible(np.array(["Men", "Women"], dtype=object), np.array(["Women", "Women"], dtype=object)).tolist() == [False, True]


def test_filters_relax_least_confident_first_and_ties_by_priority():
    f = [QueryFilter("item_type", "Tshirts", 0.97, "predicted"), QueryFilter("colour", "Black", 0.55, "predicted"),
         QueryFilter("gender", "Men", 0.99, "predicted"), QueryFilter("season", "Summer", 0.2, "predicted", "skipped")]
    assert [x.head for x in relax_order(f, ("item_type", "colour", "gender"))] == ["colour", "item_type", "gender"]
    known = [QueryFilter(h, "x", 1.0, "catalogue") for h in ("item_type", "colour", "gender")]
    assert [x.head for x in relax_order(known, ("item_type", "gender", "colour"))] == ["colour", "gender", "item_type"]


def test_outfit_slots_come_from_the_catalogue_and_never_complete_themselves():
    from vibe.catalog.rules import COMPLETES, completes, item_slot

    assert item_slot("Topwear", "Kurtas") == item_slot("Topwear", "Kurtis") == item_slot("Topwear", "Tshirts") == "top"
    assert item_slot("Topwear", "Jackets") == "layer" and item_slot("Topwear", "Dupatta") == "scarf"
    assert item_slot("Dress", "Dresses") == item_slot("Saree", "Sarees") == "one-piece"
    assert item_slot("Shoes", "Heels") == item_slot("Flip Flops", "Flip Flops") == "footwear"
    assert item_slot("Fragrance", "Deodorant") == item_slot(None, None) == "other"
    for slot, wanted in COMPLETES.items():
        assert slot not in wanted and not completes(slot, slot)
    assert "bottom" in COMPLETES["top"] and "footwear" in COMPLETES["top"]
    assert not {"top", "bottom"} & set(COMPLETES["one-piece"])  # a dress takes no top or bottom
    assert "innerwear" not in COMPLETES and not completes("innerwear", "top")
    assert completes("top", np.array(["bottom", "top", "watch"], dtype=object)).tolist() == [True, False, True]


def test_goes_with_is_slot_usage_gender_and_season():
    from vibe.catalog.rules import goes_with

    shirt = {"slot": "top", "style": "Casual", "gender": "Men", "season": "Summer"}
    jeans = {"slot": "bottom", "style": "Casual", "gender": "Men", "season": "Summer"}
    assert goes_with(shirt, jeans) and goes_with(jeans, shirt)
    assert not goes_with(shirt, {**jeans, "slot": "top"})  # a second top
    assert not goes_with(shirt, {**jeans, "style": "Formal"}) and not goes_with(shirt, {**jeans, "gender": "Women"})
    assert not goes_with(shirt, {**jeans, "season": "Winter"}) and goes_with(shirt, {**jeans, "season": None})
    assert goes_with(shirt, {**jeans, "season": "Spring"}) and goes_with(shirt, {**jeans, "season": "Fall"})
    assert not goes_with({**shirt, "style": None}, jeans)  # no usage label: no evidence it goes


def test_only_opposite_seasons_clash():
    from vibe.catalog.rules import seasons_compatible

    assert seasons_compatible("Winter", "Fall") and seasons_compatible("Winter", "Spring")
    assert not seasons_compatible("Winter", "Summer") and not seasons_compatible("Spring", "Fall")
    assert seasons_compatible("Summer", None) and seasons_compatible("Autumn?", "Summer")  # unknown: no evidence
    got = seasons_compatible(np.array(["Summer", "Winter", None], dtype=object), np.array(["Winter", "Winter", "Fall"], dtype=object))
    assert got.tolist() == [False, True, True]
