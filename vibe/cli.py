"""The command line: build, find, match, serve, eval, audit, search, status, bench and the training commands. User errors end in one line
and a non-zero exit, never a traceback."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import (
    ENGINES,
    HEADS,
    INDEX_KINDS,
    PRECISIONS,
    BuildConfig,
    CatalogConfig,
    HeadsConfig,
    ProjectionConfig,
    QualityConfig,
    default_backbone,
    default_workdir,
)
from .errors import VibeError


def _given(**values) -> dict:
    """The options the user gave: a config's own defaults fill the rest (argparse repeats none of them)."""
    return {k: v for k, v in values.items() if v is not None}


def _catalog_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--data", type=Path, required=required, help="catalogue folder: styles.csv + images/{id}.jpg")
    p.add_argument("--subset", choices=("all", "train", "holdout"), default=None,
                   help=f"a deterministic split by item id: build on 'train', evaluate on 'holdout' (default: {CatalogConfig.subset})")
    p.add_argument("--holdout-fraction", type=float, default=None,
                   help=f"share of items in the holdout subset (default {CatalogConfig.holdout_fraction})")
    p.add_argument("--limit", type=int, default=None, help="use at most N items (smoke runs)")


def _catalog_config(a) -> CatalogConfig:
    return CatalogConfig(**_given(root=a.data, subset=a.subset, holdout_fraction=a.holdout_fraction, limit=a.limit))


def _workdir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", type=Path, default=None, help="where artifacts live (default $VIBE_WORKDIR or data/build)")


def _training_args(p: argparse.ArgumentParser, default_out: str, shipped: str, config: str) -> None:
    """What every command that trains a shipped model takes: the catalogue, where to write, what to leave out."""
    _catalog_args(p, required=True)
    p.add_argument("--out", type=Path, default=None,
                   help=f"output folder (default: a new WORKDIR/{default_out}-<time>; the shipped {shipped} is replaced "
                        "only when --out names it)")
    p.add_argument("--exclude", type=Path, action="append", default=[], metavar="CATALOG",
                   help="leave out the items of this catalogue folder (repeatable), e.g. data/sample so the demo shows unseen photos")
    _workdir(p)
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs (default from {config})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m vibe", description="Find-My-Vibe: FashionCLIP attribute heads, style space and FAISS retrieval.")
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="catalogue -> embeddings -> heads -> projection -> indexes",
                       description="Embed a catalogue (only new or changed images), train the five heads and the 256-D projection, build both FAISS indexes, publish atomically.")
    _catalog_args(b, required=True)
    b.add_argument("--backbone", default=None, help=f"auto | fashion-clip | vibe-mini | tiny-random | a Hugging Face CLIP id | a local folder (default {default_backbone()}: FashionCLIP if it can be loaded, else vibe-mini)")
    _workdir(b)
    b.add_argument("--triplets", type=Path, default=None, help="curated anchor,positive,negative CSV (item ids); default: mined from labels")
    b.add_argument("--min-class-count", type=int, default=None,
                   help=f"classes rarer than this merge into 'Other' (default {HeadsConfig.min_class_count})")
    b.add_argument("--head-epochs", type=int, default=None, help=f"max epochs of the heads (early stopping; default {HeadsConfig.epochs})")
    b.add_argument("--projection-epochs", type=int, default=None, help=f"default {ProjectionConfig.epochs}")
    b.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="how a CLIP backbone runs: auto (the fastest this CPU measures with cosine >= 0.99 to fp32; default), "
                        "fp32, bf16 (native bf16 CPUs), int8 (ONNX Runtime)")
    b.add_argument("--index", choices=INDEX_KINDS, default=None,
                   help="FAISS index: exact, ivf (IVF-SQ8, approximate), or auto (exact up to 200,000 items; default)")
    b.add_argument("--engine", choices=ENGINES, default=None,
                   help="where images are embedded: here (default), or on Ray (pip install -r requirements-scale.txt)")
    b.add_argument("--ray-address", default=None, help="a Ray cluster this machine is a node of: auto or HEAD:6379 (default: a local Ray; ray:// Ray Client addresses cannot run Ray Data)")
    b.add_argument("--ray-workers", type=int, default=None, help=f"embedding actors on Ray (default {BuildConfig.ray_workers})")
    b.add_argument("--audit-folds", type=int, default=None, metavar="K",
                   help=f"out-of-fold heads for the label audit (default {HeadsConfig.audit_folds}; 0: no audit)")
    b.add_argument("--check", type=int, default=None, metavar="N",
                   help=f"the build's own ranking check: N held-out photos re-shot per change (default {QualityConfig.per_change}; 0: none)")
    b.add_argument("--batch-size", type=int, default=None, help=f"default {BuildConfig.batch_size}")
    b.add_argument("--seed", type=int, default=None, help=f"default {BuildConfig.seed}")
    b.add_argument("--quiet", action="store_true", help="no progress bars")

    f = sub.add_parser("find", help="predicted attributes and the k best matches for an image",
                       description="Predict the image's attributes, then return matches: 'same' = the same item (filtered by item type, colour, gender; ranked in the 512-D space); 'combo' = an outfit: the best item of every slot that completes the query's (a top: a bottom, footwear, a layer, a bag...), in the same style, ranked in the 256-D style space.")
    f.add_argument("image", type=Path, nargs="?", help="an image file (jpg/png/webp/...)")
    f.add_argument("--item", type=int, default=None, help="query with a catalogue item id instead of an image")
    f.add_argument("--mode", choices=("same", "combo"), default="same")
    f.add_argument("-k", type=int, default=5, help="number of matches (default 5)")
    f.add_argument("--per-slot", type=int, default=4, help="combo mode: options kept per outfit slot (default 4)")
    f.add_argument("--box", default=None, metavar="X0,Y0,X1,Y1",
                   help="search only the product inside this box (left,top,right,bottom in the photo's pixels; a box "
                        "running past the photo's edge is clipped to it; a negative first number needs the = form: "
                        "--box=-20,0,300,400)")
    f.add_argument("--product", type=int, default=None, metavar="N",
                   help="search only the N-th product found in the photo (1: the detector's best; by default the "
                        "first few are tried and the most catalogue-like kept)")
    f.add_argument("--all", action="store_true", help="matches for every product found in the photo, best first")
    f.add_argument("--backbone", default=None, help="default: the backbone the index was built with")
    f.add_argument("--json", action="store_true", help="print JSON")
    _workdir(f)

    e = sub.add_parser("eval", help="score a build on a labelled catalogue it was not trained on",
                       description="Head accuracy and macro-F1; every item photographed in held-out kinds of photo (on real photos, "
                                   "in a page screenshot beside other products, as a phone shot, under another white balance: "
                                   "made by code no training uses) and re-shot the way training does (cropped, smaller in frame, "
                                   "on a tinted or busy backdrop, rotated, relit, recompressed, downscaled), each searched in the "
                                   "build's index plus the originals: recall@1/@5 and MRR through same mode and the bare "
                                   "embedding, per kind and per change; whether the proposals find the products; label "
                                   "precision@5 of unfiltered neighbours; and each mode's filter precision@k. The report is also "
                                   "saved beside the build, for the dashboard.")
    _catalog_args(e, required=True)
    e.add_argument("-k", "--k", dest="k", type=int, default=5, help="matches per query for the filter precision (default 5)")
    e.add_argument("--seed", type=int, default=None, help=f"seed of the re-shot photos (default {QualityConfig.seed})")
    e.add_argument("--changes", default=None, help="comma-separated re-shoot changes (default: all)")
    e.add_argument("--kinds", default=None, help="comma-separated held-out kinds of photo (default: all; 'none': none)")
    e.add_argument("--scenes", type=int, default=None,
                   help=f"held-out scenes of 1-5 products for proposal recall (default {QualityConfig.scenes})")
    e.add_argument("--backbone", default=None, help="default: the backbone the index was built with")
    e.add_argument("--json", action="store_true", help="print the scores as JSON")
    e.add_argument("--batch-size", type=int, default=32)
    _workdir(e)

    t = sub.add_parser("train-backbone", help="train the offline vibe-mini encoder on a labelled catalogue",
                       description="Train vibe-mini (a compact CNN, 512-D embeddings) on a labelled catalogue on the CPU and save it as safetensors.")
    _training_args(t, "backbones/vibe-mini", "checkpoints/vibe-mini", "MiniConfig")
    t.add_argument("--resolution", type=int, default=None, help="input side in pixels (default from MiniConfig)")

    sg = sub.add_parser("train-segmenter", help="train the product segmenter that cuts products out of busy query photos",
                        description="Train the product segmenter (a small U-Net, vibe.locate.segment) on a catalogue's studio shots, "
                                    "cut out by their white backdrop and pasted on other backdrops; saved as safetensors.")
    _training_args(sg, "segmenters/segmenter", "checkpoints/segmenter", "SegmenterConfig")

    tp = sub.add_parser("train-proposals", help="train the product proposal detector (every product in a photo, boxed)",
                        description="Train the proposal detector (a small centre-point detector, vibe.locate.proposals) on "
                                    "scenes of a catalogue's products pasted on many kinds of backdrop (vibe.train.scenes); "
                                    "saved as safetensors.")
    _training_args(tp, "detectors/proposals", "checkpoints/proposals", "DetectorConfig")
    tp.add_argument("--init", type=Path, default=None, metavar="DETECTOR",
                    help="continue training this trained detector's folder (e.g. checkpoints/proposals) instead of a new net")
    tp.add_argument("--lr", type=float, default=None, help="peak learning rate (default from DetectorConfig)")
    tp.add_argument("--side", type=int, default=None,
                    help="input side in pixels (default from DetectorConfig; with --init, a detector trained at another "
                         "side is trained on at this one: the net is fully convolutional)")

    bn = sub.add_parser("bench", help="measure every stage against its physical limit and the prototype's way",
                        description="Embedding pipeline vs bare forward, fast path vs the prototype, query latency on a 44,000-item index, "
                                    "incremental rebuild, UMAP, and peak memory of a 44,000-item build, in one run (a few minutes).")
    bn.add_argument("--json", action="store_true", help="print one JSON object")
    bn.add_argument("--quick", action="store_true", help="a tiny configuration (seconds; what the tests run)")
    bn.add_argument("--backbone", default=None, help="default: vit-b32-random (FashionCLIP's architecture and cost, random weights)")
    bn.add_argument("--data", type=Path, default=None, help="a catalogue of real photos to measure on (default data/sample)")

    w = sub.add_parser("search", help="search the catalogue by words (\"red casual shirt men\")",
                       description="Words are read as attribute values of the five heads (synonyms too: navy, sneakers, tee, "
                                   "ladies...) and as words of product names; items are ranked by the heads' probabilities "
                                   "with the catalogue labels as evidence, fused with the text tower's ranking when the "
                                   "backbone has one (FashionCLIP).")
    w.add_argument("query", help="the words, quoted")
    w.add_argument("-k", type=int, default=10, help="number of matches (default 10)")
    w.add_argument("--json", action="store_true", help="print JSON")
    _workdir(w)

    au = sub.add_parser("audit", help="catalogue QA over the current build: mislabelled items, duplicate photos",
                        description="labels: items whose catalogue label disagrees with a held-out (out-of-fold) head prediction "
                                    "and with their nearest neighbours, most suspicious first. duplicates: groups of "
                                    "near-identical photos. planted: the audit measured on a copy of a catalogue with planted "
                                    "faults (flipped labels, re-encoded duplicates).")
    asub = au.add_subparsers(dest="audit", required=True)
    al = asub.add_parser("labels", help="likely mislabelled items")
    al.add_argument("--head", default="item_type", choices=list(HEADS))
    al.add_argument("--top", type=int, default=None,
                    help="how many to list (default: as many as the estimate of wrong labels says)")
    al.add_argument("--all", action="store_true", help="every disagreement between label and held-out prediction")
    al.add_argument("--json", action="store_true")
    _workdir(al)
    af = asub.add_parser("fix", help="record a decision on an item's label in label_fixes.csv (the next build applies it)")
    af.add_argument("id", type=int)
    af.add_argument("--head", default="item_type", choices=list(HEADS))
    how = af.add_mutually_exclusive_group(required=True)
    how.add_argument("--accept", action="store_true", help="take the audit's suggestion")
    how.add_argument("--set", metavar="LABEL", help="set another label")
    how.add_argument("--right", action="store_true", help="the catalogue's label is right: never list it again")
    af.add_argument("--who", default="", help="who decided (saved with the fix)")
    _workdir(af)
    ax = asub.add_parser("fixes", help="the label fixes in force, as CSV for the product-information system")
    ax.add_argument("--out", type=Path, default=None, help="write the CSV here (default: print it)")
    _workdir(ax)
    ad = asub.add_parser("duplicates", help="groups of photos of one shot uploaded again (each proposed pair aligned)")
    ad.add_argument("--threshold", type=float, default=None,
                    help="cosine in the 512-D space that proposes a pair (default 0.96, or the build's calibrated "
                         "cosine where lower)")
    ad.add_argument("--json", action="store_true")
    _workdir(ad)
    ac = asub.add_parser("copies", help="score the duplicate audit on kinds of copy it was not tuned on (no rebuild)")
    ac.add_argument("--per-kind", type=int, default=50, help="photos copied per kind (default 50)")
    ac.add_argument("--seed", type=int, default=0, help="which photos are copied (default 0)")
    ac.add_argument("--json", action="store_true")
    _workdir(ac)
    ap_ = asub.add_parser("planted", help="plant faults in a copy of a catalogue, build it, score the audit")
    _catalog_args(ap_, required=True)
    ap_.add_argument("--backbone", default=None, help=f"default {default_backbone()}")
    ap_.add_argument("--flip", type=float, default=0.03, help="share of item_type labels flipped (default 0.03)")
    ap_.add_argument("--copies", type=int, default=50, help="photos uploaded again, retouched or re-encoded (default 50)")
    ap_.add_argument("--seed", type=int, default=0, help="which flips and copies are drawn (default 0)")
    ap_.add_argument("--kinds", nargs="+", choices=("uniform", "confusion"), default=["uniform", "confusion"],
                     help="how flipped labels are drawn: by the catalogue's frequencies, or to the look-alike type "
                          "(one build each; default both)")
    ap_.add_argument("--json", action="store_true")
    ap_.add_argument("--workdir", type=Path, default=None, help="where the planted copy is built (default WORKDIR/planted)")

    mt = sub.add_parser("match", help="match every photo of a folder or zip: one CSV row per (photo, rank)",
                        description="Photos are embedded in batches; each photo's matches go to --out (rewritten after "
                                    "every batch), and a photo whose best match is under the build's same-item threshold "
                                    "is marked 'no match'. Running it again skips photos already in --out (by content), "
                                    "so an interrupted batch resumes.")
    mt.add_argument("source", type=Path, help="a folder of photos (searched recursively) or a .zip of photos")
    mt.add_argument("--mode", choices=("same", "combo"), default="same")
    mt.add_argument("-k", type=int, default=5, help="matches per photo (default 5)")
    mt.add_argument("--out", type=Path, default=Path("matches.csv"), help="the CSV to write (default matches.csv)")
    mt.add_argument("--json", action="store_true", help="also print the rows and the summary as JSON")
    mt.add_argument("--quiet", action="store_true", help="no progress bar")
    _workdir(mt)

    sv = sub.add_parser("serve", help="the REST API over the current build (FastAPI; OpenAPI docs at /docs)",
                        description="POST /v1/find, GET /v1/search, POST /v1/embed, GET /v1/items/{id}[/image], "
                                    "GET /v1/status, GET /healthz. Binds 127.0.0.1 unless told otherwise; any other "
                                    "address needs --token (or VIBE_API_TOKEN), which every request must then send.")
    sv.add_argument("--host", default=None, help="default 127.0.0.1")
    sv.add_argument("--port", type=int, default=None, help="default 8000")
    sv.add_argument("--token", default=None, help="API token (default $VIBE_API_TOKEN); required off loopback")
    sv.add_argument("--max-batch", type=int, default=None, help="views embedded together across requests (default 32)")
    sv.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    _workdir(sv)

    s = sub.add_parser("status", help="what is built in the workdir")
    _workdir(s)
    return ap


def _progress(quiet: bool = False):
    from .util.progress import TqdmProgress

    return TqdmProgress(enabled=not quiet)


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def _load(workdir: Path, backbone: str | None):
    from .search.bundle import load_bundle

    bundle = load_bundle(workdir, backbone=backbone)
    if bundle.encoder.note:
        _say(f"warning: {bundle.encoder.note}")
    m = bundle.artifacts.manifest
    _say(f"backbone: {bundle.encoder.description}; index built {m['created_at']} ({m['n_items']} items)")
    return bundle


def cmd_build(a) -> int:
    from .build.pipeline import build

    cfg = BuildConfig(catalog=_catalog_config(a), **_given(
        backbone=a.backbone, workdir=a.workdir, precision=a.precision, index=a.index, engine=a.engine,
        ray_address=a.ray_address, ray_workers=a.ray_workers, batch_size=a.batch_size, seed=a.seed),
        heads=HeadsConfig(**_given(min_class_count=a.min_class_count, epochs=a.head_epochs, audit_folds=a.audit_folds)),
        projection=ProjectionConfig(**_given(triplets_csv=a.triplets, epochs=a.projection_epochs)),
        quality=QualityConfig(**_given(per_change=a.check)))
    progress = _progress(a.quiet)
    result = build(cfg, progress=progress, log=_say)
    progress.close()
    print("\n".join(result.lines()))
    return 0


def _print_result(res) -> None:
    if res.query_view:
        print(f"query: {res.query_view['note']}")
        shown = res.query_view.get("proposals") or []
        if shown:
            print(f"products found: {len(shown)} ("
                  + "; ".join(f"{i}: box {','.join(map(str, p['box']))} score {p['score']:.2f}" for i, p in enumerate(shown, 1))
                  + ")")
        for o in res.query_view.get("others") or []:
            print(f"also in this photo: product {o['proposal'] + 1}, nearest {o['id']} {o['name']} ({o['score']:.3f}"
                  + (", close enough to be that very product" if o["verdict"] == "match" else "")
                  + f"; search it with --product {o['proposal'] + 1})")
    print("predicted attributes:")
    for head, p in res.predictions.items():
        print(f"  {head:<10} {p.label:<16} {p.confidence:.2f}")
    print(f"{res.mode} mode, filters: {', '.join(f'{h}={v}' for h, v in res.filters.items()) or 'none'}")
    for f in res.filter_notes:
        if not f.applied:
            print(f"  not applied: {f.head}={f.value} ({f.status}: {f.reason}; {f.detail})")
    if res.query_slot:
        print(f"outfit around a {res.query_slot['slot']} (from {res.query_slot['how']}): "
              + (", ".join(f"{slot} ({len(options)})" for slot, options in res.outfit.items()) or "this slot completes no outfit"))
    if res.same_item_note():
        print(res.same_item_note())
    for i, m in enumerate(res.matches, 1):
        labels = " / ".join(v or "?" for v in m.labels.values())
        print(f"{i:>3}. {m.id:<8} {m.score:.3f}  {(m.slot + ': ') if m.slot else ''}{m.name}  [{labels}]")


def cmd_find(a) -> int:
    if (a.image is None) == (a.item is None):
        raise VibeError("Give an image file or --item ID (one of them).")
    if a.item is not None and (a.box or a.all or a.product):
        raise VibeError("--box, --product and --all pick a part of a photo: give a photo, not --item.")
    if a.product is not None and a.product < 1:
        raise VibeError("--product counts from 1 (the best product found).")
    if sum(map(bool, (a.box, a.all, a.product))) > 1:
        raise VibeError("Give one of --box, --product or --all.")
    box = None
    if a.image is not None:
        from .locate.boxes import check_box
        from .util.images import load_image  # light: a bad file or box fails here, before torch, FAISS or the model

        photo = load_image(a.image)
        if a.box:
            box = check_box(a.box.split(","), photo.size)
    bundle = _load(a.workdir or default_workdir(), a.backbone)
    if a.all:
        results = bundle.matcher.find_every(a.image, mode=a.mode, k=a.k, per_slot=a.per_slot)
        if a.json:
            print(json.dumps([r.to_dict() for r in results], indent=2))
            return 0
        for i, res in enumerate(results, 1):
            print(f"=== {i} of {len(results)}")
            _print_result(res)
        return 0
    res = bundle.matcher.find(a.image, item_id=a.item, mode=a.mode, k=a.k, per_slot=a.per_slot, box=box,
                              proposal=a.product - 1 if a.product else None)
    if a.json:
        print(json.dumps(res.to_dict(), indent=2))
        return 0
    _print_result(res)
    return 0


def cmd_eval(a) -> int:
    from .catalog.reader import load_catalog
    from .eval.evaluate import evaluate, save_report

    workdir = a.workdir or default_workdir()
    quality = QualityConfig(**_given(seed=a.seed, changes=tuple(c.strip() for c in a.changes.split(",")) if a.changes else None,
                                     heldout=(() if a.kinds == "none" else tuple(c.strip() for c in a.kinds.split(",")))
                                     if a.kinds else None, scenes=a.scenes))
    catalog = load_catalog(_catalog_config(a))  # a wrong folder, an empty subset or a bad option fails before the model loads
    bundle = _load(workdir, a.backbone)
    art, encoder = bundle.artifacts, bundle.encoder
    for line in catalog.report.lines():
        _say(line)
    progress = _progress(a.json)
    scores, extra = evaluate(art, encoder, catalog, workdir, k=a.k, batch_size=a.batch_size, quality=quality, progress=progress)
    progress.close()
    saved = save_report(art, f"{catalog.root.name}-{a.subset}", scores, extra)
    _say(f"report saved to {saved}")
    if extra["overlap_with_build"]:
        _say(f"warning: {extra['overlap_with_build']} of the {scores['n_queries']} query items are also in the built index: "
             "scores are optimistic (build with --subset train, evaluate with --subset holdout).")
    if a.json:
        print(json.dumps(scores))
        return 0
    r = scores["retrieval"]
    print(f"{scores['n_queries']} queries")
    for h, m in scores["heads"].items():
        print(f"  {h:<10} accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}")
    mrr = f"mrr@{r['reshoot']['k']}"

    def table(title: str, report: dict) -> None:
        print(title)
        for name in ["all", *report["same"]["per_change"]]:
            same = report["same"] if name == "all" else report["same"]["per_change"][name]
            bare = report["embedding"] if name == "all" else report["embedding"]["per_change"][name]
            print(f"  {name:<16} same mode {same['recall@1']:.3f} / {same['recall@5']:.3f} / {same[mrr]:.3f}"
                  f"   bare embedding {bare['recall@1']:.3f} / {bare['recall@5']:.3f} / {bare[mrr]:.3f}")

    rs = r["reshoot"]
    held = r.get("heldout") or {}
    if held:
        table(f"held-out kinds of photo (code no training uses) finding their own item among {rs['index_size']:,} "
              f"(recall@1 / recall@5 / MRR@{rs['k']}):", held)
        proposals = held["proposals"]
        if proposals.get("page_screenshot"):
            print(f"  page screenshots: own product proposed first {proposals['page_screenshot']['own_box_first']:.3f}")
        if proposals.get("scenes"):
            print(f"  scenes of 1-5 products: proposal recall (IoU >= 0.5) {proposals['scenes']['recall']:.3f}")
    table(f"re-shoots (training-style) finding their own item among {rs['index_size']:,}:", rs)
    n = r["neighbours"]
    print(f"unfiltered neighbours, label precision@{n['k']}: type and colour {n['type_and_colour']:.3f}, type {n['type']:.3f}")
    for mode in ("same", "combo"):
        print(f"  {mode:<6} filter precision@{r[mode]['k']} {r[mode]['precision']:.3f}")
    return 0


def _excluded_ids(folders) -> set[int]:
    from .catalog.reader import read_styles

    ids: set[int] = set()
    for folder in folders:
        ids |= set(read_styles(Path(folder) / "styles.csv")[0]["id"].tolist())
    return ids


def cmd_train_segmenter(a) -> int:
    from dataclasses import replace
    from datetime import datetime, timezone

    from .locate.segment import SegmenterConfig
    from .train.segmenter import train_segmenter

    cfg = SegmenterConfig() if a.epochs is None else replace(SegmenterConfig(), epochs=a.epochs)
    out = a.out or (a.workdir or default_workdir()) / "segmenters" / f"segmenter-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    progress = _progress(a.quiet)
    report = train_segmenter(_catalog_config(a), out, cfg, progress=progress, log=_say, exclude_ids=_excluded_ids(a.exclude))
    progress.close()
    print(f"segmenter saved to {out} after {report['train_seconds']:.0f}s; mask IoU on {report['n_report']} held-out "
          f"composites: {report['report_iou']:.3f}")
    return 0


def cmd_train_proposals(a) -> int:
    from dataclasses import replace
    from datetime import datetime, timezone

    from .locate.proposals import Detector, DetectorConfig
    from .train.proposals import train_proposals

    # continuing a detector keeps its own recipe (split, decoding); only what is asked for changes
    cfg = replace(Detector(a.init, onnx=False).cfg if a.init else DetectorConfig(), **_given(epochs=a.epochs, lr=a.lr, side=a.side))
    out = a.out or (a.workdir or default_workdir()) / "detectors" / f"proposals-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    progress = _progress(a.quiet)
    report = train_proposals(_catalog_config(a), out, cfg, progress=progress, log=_say, exclude_ids=_excluded_ids(a.exclude),
                             init=a.init)
    progress.close()
    print(f"proposal detector saved to {out} after {report['train_seconds']:.0f}s; proposal recall (IoU >= 0.5) on "
          f"{report['n_report']} held-out products' scenes: {report['report_recall']:.3f} "
          f"(before training: {report['untrained_recall']:.3f})")
    return 0


def cmd_train_backbone(a) -> int:
    from dataclasses import replace
    from datetime import datetime, timezone

    from .train.mini import MiniConfig, train_mini

    cfg = MiniConfig()
    cfg = replace(cfg, **{k: v for k, v in (("epochs", a.epochs), ("resolution", a.resolution)) if v is not None})
    excluded = _excluded_ids(a.exclude)
    out = a.out or (a.workdir or default_workdir()) / "backbones" / f"vibe-mini-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"
    progress = _progress(a.quiet)
    report = train_mini(_catalog_config(a), out, cfg, progress=progress, log=_say, exclude_ids=excluded,
                        excluded_from=[str(f) for f in a.exclude])
    progress.close()
    acc = ", ".join(f"{h} {v:.3f}" for h, v in report["accuracy"].items())
    print(f"vibe-mini saved to {out} after {report['train_seconds']:.0f}s; accuracy on {report['n_report']} held-out images: {acc}")
    print(f"use it with --backbone {out}")
    return 0


def cmd_bench(a) -> int:
    from dataclasses import replace

    from .bench.run import KEYS, BenchConfig, run

    cfg = BenchConfig.quick() if a.quick else BenchConfig()
    cfg = replace(cfg, **_given(backbone=a.backbone, data=a.data))
    progress = _progress(False)
    result = run(cfg, progress=progress, say=_say)  # each figure is said (stderr) as soon as it is measured
    progress.close()
    if a.json:
        print(json.dumps(result, default=str))
        return 0
    for k in KEYS:
        value = result[k]
        print(f"{k:<34} {value:.4g}" if value is not None else f"{k:<34} (not measured)")
    for name, why in {**result["skipped"], **result["failed"]}.items():
        print(f"{name}: {'skipped' if name in result['skipped'] else 'failed'}: {why}")
    print(json.dumps(result["machine"]))
    print(json.dumps(result["details"], default=str))
    return 0


def cmd_search(a) -> int:
    bundle = _load(a.workdir or default_workdir(), None)
    res = bundle.matcher.search_words(a.query, k=a.k)
    if a.json:
        print(json.dumps(res.to_dict(), indent=2))
        return 0
    asked = "; ".join(f"{h} = {' or '.join(v)}" for h, v in res.attributes.items()) or "no attribute"
    print(f"read as: {asked}" + (f"; name words: {', '.join(res.words)}" if res.words else "")
          + ("; ranked with the text tower too" if res.text_tower else ""))
    if res.note():
        print(res.note())
    for i, m in enumerate(res.matches, 1):
        print(f"{i:>3}. {m.id:<8} {m.name}  [{' / '.join(v or '?' for v in m.labels.values())}]")
    return 0


def cmd_audit(a) -> int:
    from .qa.duplicates import HASH_DISTANCE, NEAREST_COSINE, default_duplicate_threshold, find_groups
    from .qa.labels import audit_labels

    if a.audit == "planted":
        from .qa.planted import measure, summary_lines, table_lines

        cfg = BuildConfig(catalog=_catalog_config(a), backbone=a.backbone or default_backbone(),
                          workdir=a.workdir or default_workdir() / "planted")
        progress = _progress(a.json)
        result = measure(cfg, flip=a.flip, copies=a.copies, seed=a.seed, kinds=tuple(a.kinds), progress=progress, log=_say)
        progress.close()
        if a.json:
            print(json.dumps(result))
        else:
            print("\n".join(["precision at the number flipped:", *table_lines(result), *summary_lines(result)]))
        return 0
    bundle = _load(a.workdir or default_workdir(), None)
    art = bundle.artifacts
    if a.audit == "copies":
        from .qa.copies import measure_copies

        result = measure_copies(art, bundle.encoder, a.per_kind, a.seed)
        if a.json:
            print(json.dumps(result))
            return 0
        print(f"{a.per_kind} copies per kind, grouped at cosine >= {result['threshold']:.4f} or a close photo hash, "
              "each pair checked by aligning its photos:")
        for kind, r in result["kinds"].items():
            print(f"  {kind:<14} recall {r['recall']:.2f}   false groups {r['false_groups']}   ({r['how']})")
        return 0
    if a.audit in ("fix", "fixes"):
        return _fixes(a, art)
    if a.audit == "labels":
        audit = audit_labels(art, a.head)
        table = audit.table if a.all else audit.table.head(a.top) if a.top else audit.shown
        out = {"head": a.head, "estimate": audit.estimate, "agreement": round(audit.agreement, 4),
               "disagreements": int(len(audit.table)),
               "decided": audit.decided, "items": [{"id": int(r.id), "label": r.label, "suggested": r.suggested,
                                                    "score": round(float(r.score), 4)} for r in table.itertuples()]}
        if a.json:
            print(json.dumps(out))
            return 0
        print(f"about {audit.estimate} {a.head} labels look wrong (confident learning's estimate); "
              f"{len(audit.table)} disagree with the held-out heads" + (f", {audit.decided} decided" if audit.decided else "")
              + f"; listing {len(table)}, most certain first" + ("" if a.all else " (--all: every disagreement)"))
        print(f"the held-out heads agree with {audit.agreement:.0%} of these labels: the lower that is, the more of the "
              "suggestions are the model's own mistakes")
        for r in table.itertuples():
            print(f"{r.id:<8} {r.score:6.2f}  {r.label} -> {r.suggested}   {r.name}")
        return 0
    threshold = a.threshold if a.threshold is not None else default_duplicate_threshold(art)
    groups = find_groups(art, threshold)
    if a.json:
        print(json.dumps({"threshold": threshold, "groups": [g.ids for g in groups],
                          "details": [{"ids": g.ids, "witnesses": list(g.witnesses), "cosine": round(g.cosine, 5),
                                       "hash_distance": g.hash_distance, "keypoints": g.keypoints, "verdict": g.verdict}
                                      for g in groups]}))
        return 0
    print(f"{len(groups)} groups of photos of one shot: pairs at cosine >= {threshold:.4f}, each photo's nearest at "
          f">= {NEAREST_COSINE} or a photo hash within {HASH_DISTANCE} bits, checked by aligning the photos")
    for g in groups:
        print(f"  {', '.join(map(str, g.ids))}   [{g.describe()}]" + (f" {g.verdict}" if g.verdict else ""))
    return 0


def _fixes(a, art) -> int:
    from .catalog.fixes import ACCEPTED, RIGHT, SET, export_fixes, record_fix
    from .catalog.reader import as_label
    from .qa.labels import suggestions
    from .util.files import atomic_path

    if a.audit == "fixes":
        table = export_fixes(art.catalog_root)
        if a.out:
            with atomic_path(a.out) as tmp:
                table.to_csv(tmp, index=False)
            _say(f"{len(table)} label fixes written to {a.out}")
        else:
            print(table.to_csv(index=False), end="")
        return 0
    items = art.items.set_index("id")
    if a.id not in items.index:
        raise VibeError(f"No item {a.id} in the current build.")
    old = as_label(items.at[a.id, a.head])
    if a.accept:
        if art.oof is None:
            raise VibeError("This build has no label audit (built with --audit-folds 0): there is no suggestion to accept.")
        vocab = art.heads.vocabs[a.head]
        new, action = vocab[int(suggestions(art.oof[a.head][[items.index.get_loc(a.id)]], vocab)[0])], ACCEPTED
    else:
        new, action = (old, RIGHT) if a.right else (a.set, SET)
    row = record_fix(art.catalog_root, a.id, a.head, old, new, action, a.who)
    _say(f"saved in {art.catalog_root / 'label_fixes.csv'}: {a.id} {a.head} {row['old']!r} -> {row['new']!r} "
         f"({row['action']}); the next build applies it")
    return 0


def cmd_match(a) -> int:
    from .search.batch import match_to_csv, photos_in

    photos = photos_in(a.source)  # a missing folder or a bad zip fails here, before the model loads
    if not photos:
        raise VibeError(f"{a.source} holds no photos (jpg, jpeg, png, webp, gif, bmp, tif, tiff).")
    bundle = _load(a.workdir or default_workdir(), None)
    progress = _progress(a.quiet)
    summary, rows = match_to_csv(bundle.matcher, photos, a.out, mode=a.mode, k=a.k, progress=progress)
    progress.close()
    _say(f"{summary.line()}; written to {a.out}")
    if a.json:
        print(json.dumps({"summary": summary.to_dict(), "rows": rows.to_dict(orient="records")}, indent=2))
    return 0


def cmd_serve(a) -> int:
    import logging
    import os

    from .config import ServeConfig

    cfg = ServeConfig(**_given(workdir=a.workdir or default_workdir(), host=a.host, port=a.port,
                               token=a.token or os.environ.get("VIBE_API_TOKEN") or None, max_batch=a.max_batch))
    try:
        import uvicorn

        from .serve.app import create_app
        from .serve.state import Served
    except ImportError as e:
        raise VibeError(f"The API needs FastAPI and uvicorn ({e.name} is missing): pip install -r requirements.txt.") from None
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _steady_malloc()
    served = Served(cfg.workdir, cfg.backbone)  # a missing or unloadable build is one clear error, before binding
    _say(f"serving build {served.bundle().build_id} ({served.bundle().encoder.description}) on http://{cfg.host}:{cfg.port}"
         f" (docs at /docs){'; token required' if cfg.token else ''}")
    uvicorn.run(create_app(cfg, served), host=cfg.host, port=cfg.port, log_level=a.log_level, access_log=False)
    return 0


def _steady_malloc(arenas: int = 2, mmap_from: int = 4 << 20) -> None:
    """glibc gives every thread that allocates its own malloc arena (up to 8 per core) and returns little of them to the
    system: a server whose thread pool decodes photos of every size then grows its RSS under load without leaking.
    Two arenas keep it flatter (MALLOC_ARENA_MAX=2). And glibc raises its mmap threshold to the size of any block of
    128 kB-32 MB it frees (an upload's bytes, a decoded photo), after which blocks of that size come from the heap and
    stay there; a fixed 4 MB threshold (MALLOC_MMAP_THRESHOLD_) keeps them apart and hands them back. A setting the
    user made in the environment is left alone. Elsewhere than glibc, nothing to do."""
    import ctypes
    import os

    tunables = os.environ.get("GLIBC_TUNABLES", "")
    try:
        libc = ctypes.CDLL("libc.so.6")
        if "MALLOC_ARENA_MAX" not in os.environ and "arena_max" not in tunables:
            libc.mallopt(-8, arenas)  # -8: M_ARENA_MAX
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ and "mmap_threshold" not in tunables:
            libc.mallopt(-3, mmap_from)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def cmd_status(a) -> int:
    from .store.artifacts import status

    st = status(a.workdir or default_workdir())
    print(json.dumps(st, indent=2, default=str))  # the JSON either way: scripts read "built"
    if not st["built"]:
        raise VibeError(st["message"])
    return 0


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        return {"build": cmd_build, "find": cmd_find, "eval": cmd_eval, "status": cmd_status, "search": cmd_search,
                "audit": cmd_audit, "train-backbone": cmd_train_backbone, "train-segmenter": cmd_train_segmenter,
                "train-proposals": cmd_train_proposals, "match": cmd_match, "serve": cmd_serve,
                "bench": cmd_bench}[a.command](a)
    except VibeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the previous artifacts are untouched.", file=sys.stderr)
        return 130
