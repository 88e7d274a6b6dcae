"""Held-out query photos are deterministic, box every product they show, keep calibration and scored backdrops apart,
and stay out of every training path."""
import ast
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SAMPLE
from PIL import Image, ImageDraw

from vibe.errors import VibeError
from vibe.eval import heldout
from vibe.eval.heldout import KINDS, PARTS, PHOTOS, heldout_photo, real_photos, scene
from vibe.util.files import content_hash

PHOTOS_ = [Image.open(p).convert("RGB") for p in sorted((SAMPLE / "images").iterdir())[:8]]


def _magenta_product() -> Image.Image:
    """A catalogue-style shot of a colour no backdrop photo, surface or page chrome has: the product is easy to find."""
    photo = Image.new("RGB", (224, 224), (255, 255, 255))
    ImageDraw.Draw(photo).ellipse((62, 40, 162, 184), fill=(220, 20, 200))
    return photo


def _magenta(arr: np.ndarray) -> np.ndarray:
    r, g, b = (arr[..., i].astype(int) for i in range(3))
    return np.minimum(r, b) > 3 * g + 40


def _inside(box, size) -> bool:
    left, top, right, bottom = box
    return 0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_is_deterministic_for_its_seed_and_key_and_differs_across_keys(kind):
    a, b = (heldout_photo(PHOTOS_[0], kind, seed=3, key=7, others=PHOTOS_[1:]) for _ in range(2))
    other = heldout_photo(PHOTOS_[0], kind, seed=3, key=8, others=PHOTOS_[1:])
    assert a.kind == kind and a.image.mode == "RGB" and a.boxes == b.boxes
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert a.image.size != other.image.size or not np.array_equal(np.asarray(a.image), np.asarray(other.image))
    calibrate = heldout_photo(PHOTOS_[0], kind, seed=3, key=7, others=PHOTOS_[1:], part="calibrate")
    assert a.image.size != calibrate.image.size or not np.array_equal(np.asarray(a.image), np.asarray(calibrate.image))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("key", [0, 1, 2])
def test_the_target_box_holds_the_product_and_fits_it(kind, key):
    hp = heldout_photo(_magenta_product(), kind, seed=5, key=key, others=PHOTOS_[1:])
    assert all(_inside(box, hp.image.size) for box in hp.boxes)
    product = _magenta(np.asarray(hp.image))
    left, top, right, bottom = hp.boxes[hp.target]
    inside = product[top:bottom, left:right].sum()
    assert product.sum() > 500 and inside >= 0.97 * product.sum()  # the product is in its box...
    assert inside >= 0.45 * (right - left) * (bottom - top)  # ...and the box is not much larger than the product


@pytest.mark.parametrize("photo", PHOTOS_[:4], ids=range(4))
def test_white_balance_leaves_only_the_recoloured_white_outside_the_box(photo):
    hp = heldout_photo(photo, "white_balance", seed=1, key=2)
    arr = np.asarray(hp.image, np.float32)
    white = arr[0, 0]
    left, top, right, bottom = hp.boxes[0]
    outside = np.ones(arr.shape[:2], bool)
    outside[top:bottom, left:right] = False
    assert np.abs(arr - white).mean(axis=-1)[outside].mean() < 3
    assert np.abs(arr[top:bottom, left:right] - white).mean() > 10
    assert np.abs(white - 255).max() > 15  # the white itself took the cast


@pytest.mark.parametrize("key", range(6))
def test_a_page_screenshot_boxes_the_target_and_three_or_four_distractor_thumbnails(key):
    hp = heldout_photo(PHOTOS_[key], "page_screenshot", seed=2, key=key, others=PHOTOS_[:key] + PHOTOS_[key + 1:])
    assert hp.target == 0 and len(hp.boxes) in (4, 5)
    areas = [(right - left) * (bottom - top) for left, top, right, bottom in hp.boxes]
    assert areas[0] == max(areas) and all(_inside(box, hp.image.size) for box in hp.boxes)
    with pytest.raises(ValueError, match="at least 3"):
        heldout_photo(PHOTOS_[0], "page_screenshot", seed=2, key=key, others=PHOTOS_[1:3])


def test_unknown_kinds_and_parts_are_refused():
    with pytest.raises(ValueError, match="kind"):
        heldout_photo(PHOTOS_[0], "selfie", seed=0, key=0)
    with pytest.raises(ValueError, match="part"):
        heldout_photo(PHOTOS_[0], "phone_shot", seed=0, key=0, part="train")


def test_calibrate_and_score_parts_draw_on_disjoint_photos():
    assert set(PARTS) == set(PHOTOS) and not set(PHOTOS["calibrate"]) & set(PHOTOS["score"])
    assert {"motorcycle_left.png", "motorcycle_right.png"} <= set(PHOTOS["score"])  # a stereo pair stays together
    hashes = {part: {content_hash(p.tobytes()) for p in real_photos(part)} for part in PARTS}
    assert len(hashes["calibrate"]) == len(PHOTOS["calibrate"]) and len(hashes["score"]) == len(PHOTOS["score"])
    assert not hashes["calibrate"] & hashes["score"]
    assert all(p.mode == "RGB" for part in PARTS for p in real_photos(part))


def test_missing_scikit_image_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(heldout.importlib.util, "find_spec", lambda name: None)
    heldout._load_photos.cache_clear()
    try:
        with pytest.raises(VibeError, match="pip install -r requirements.txt"):
            real_photos("score")
    finally:
        heldout._load_photos.cache_clear()


@pytest.mark.parametrize("key", range(4))
def test_a_scene_of_four_products_boxes_each_visible_product_inside_the_frame(key):
    hp = scene([_magenta_product(), *PHOTOS_[1:4]], seed=4, key=key)
    again = scene([_magenta_product(), *PHOTOS_[1:4]], seed=4, key=key)
    assert hp.kind == "scene" and hp.target == 0 and 1 <= len(hp.boxes) <= 4 and hp.boxes == again.boxes
    assert all(_inside(box, hp.image.size) for box in hp.boxes)
    product = _magenta(np.asarray(hp.image))
    left, top, right, bottom = hp.boxes[0]
    assert product.sum() > 300 and product[top:bottom, left:right].sum() >= 0.97 * product.sum()


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _file(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def _imports(path: Path) -> set[str]:
    """Every module `path` names in an import, anywhere in it (lazy imports in functions too), relative ones resolved."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out |= {module, *(f"{module}.{a.name}" for a in node.names)}
    return {".".join(m.split(".")[:i]) for m in out for i in range(1, m.count(".") + 2)}  # a module runs its packages


def _reach(path: Path) -> set[str]:
    """The vibe modules importing `path` can run, following vibe's own imports."""
    seen, todo = set(), [path]
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo += [g for m in _imports(f) if m.startswith("vibe") and (g := _file(m))]
    return {_module(f) for f in seen}


def test_no_training_path_imports_the_held_out_photos_and_they_import_no_training_code():
    training = [*sorted((REPO / "vibe" / "train").rglob("*.py")), REPO / "vibe" / "eval" / "reshoot.py"]
    assert REPO / "vibe" / "train" / "composite.py" in training
    for path in training:
        assert "vibe.eval.heldout" not in _reach(path), f"{path.relative_to(REPO)} reaches vibe.eval.heldout"
    direct = {m for m in _imports(REPO / "vibe" / "eval" / "heldout.py") if m.startswith("vibe")}
    assert direct and not {m for m in direct if m.startswith("vibe.train") or m.startswith("vibe.eval.reshoot")}
    reached = _reach(REPO / "vibe" / "eval" / "heldout.py")
    assert not {m for m in reached if m.startswith("vibe.train") or m == "vibe.eval.reshoot"}, reached
