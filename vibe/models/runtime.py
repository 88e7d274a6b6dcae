"""How a CLIP image tower runs on this CPU: torch fp32, torch bf16 autocast (CPUs with native bf16), ONNX Runtime fp32
with full graph optimisation, ONNX Runtime int8 (dynamic, or static QDQ calibrated on real photos; VNNI where present),
or OpenVINO (optional). `auto` times each on a probe batch of real photos once per machine and backbone, keeps the
fastest whose embeddings stay within cosine 0.99 of fp32, and caches the choice (and the exported and quantised models)
in VIBE_CACHE_DIR (default ~/.cache/vibe), so a process pays for the probe once per machine."""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import PRECISIONS
from ..errors import VibeError
from ..util.files import atomic_path, cache_root, write_json
from ..util.vectors import l2_normalize
from .backbone import bf16_native

RUNTIMES = PRECISIONS[1:]  # all but auto
MIN_COSINE = 0.99
PROBE_BATCH = 16
CANDIDATES_VERSION = 2  # 2: + int8-static, onnx-fp32, openvino; probed on real photos
Forward = Callable[[torch.Tensor], np.ndarray]  # pixels -> (n, dim) float32, not normalised


@dataclass(frozen=True)
class RuntimeChoice:
    name: str  # fp32 | bf16 | int8
    why: str
    speedup: float | None  # images/s over torch fp32 on the probe batch (None: not measured, the runtime was forced)
    cosine: float | None  # worst cosine to fp32 on the probe batch
    timings: dict  # images/s of every candidate measured

    def to_dict(self) -> dict:
        return asdict(self)


def cache_dir() -> Path:
    return cache_root() / "runtime"


def cpu_flags() -> list[str]:
    """The instruction sets that decide which runtime is fastest."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    return sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "fma"})


def cpu_model() -> str:
    """The CPU's model name, as the bench reports it beside its figures."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    return next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "unknown")


def ort_available() -> bool:
    try:
        import onnx  # noqa: F401  - the exporter writes through it
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class _Tower(torch.nn.Module):
    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], model: torch.nn.Module):
        super().__init__()
        self.model, self.fn = model, forward

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.fn(pixels)


# the ONNX Runtime candidates: (file suffix, whether an image's embedding depends on the rest of its batch)
ONNX = {"onnx-fp32": ("fp32", False), "int8": ("int8", True), "int8-static": ("int8-static", False)}


def onnx_path(model_key: str, name: str = "int8") -> Path:
    """Where the ONNX model of a network (its model_key) on runtime `name` is cached."""
    return cache_dir() / f"{model_key}-{ONNX[name][0]}.onnx"


def _export(model: torch.nn.Module, forward, crop: int, model_key: str) -> Path:
    """The image tower exported to ONNX (fp32), cached: the onnx-fp32 runtime and the source of both int8 models."""
    out = onnx_path(model_key, "onnx-fp32")
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on a graph it exports correctly
        torch.onnx.export(_Tower(forward, model).eval(), (torch.zeros(1, 3, crop, crop),), str(tmp),
                          input_names=["pixels"], output_names=["emb"], opset_version=17, dynamo=False,
                          dynamic_axes={"pixels": {0: "n"}, "emb": {0: "n"}})
    return out


def onnx_model(name: str, model: torch.nn.Module, forward, crop: int, model_key: str,
               calibration: np.ndarray | None = None) -> Path:
    """The cached ONNX model of runtime `name`: fp32 as exported; int8 dynamically quantised (weights per channel,
    activations scaled per tensor at run time); int8-static quantised with QDQ nodes whose activation ranges were
    measured once on `calibration` pixels (real photos), so an image's embedding does not depend on its batch."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    out = onnx_path(model_key, name)
    fp32 = _export(model, forward, crop, model_key)
    if name == "onnx-fp32" or out.is_file():
        return out
    with atomic_path(out) as tmp:
        if name == "int8":
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        else:
            if calibration is None:
                raise VibeError("int8-static needs calibration photos to measure its activation ranges.")

            class Photos(CalibrationDataReader):
                def __init__(self):
                    self.left = iter({"pixels": calibration[i:i + 1]} for i in range(len(calibration)))

                def get_next(self):
                    return next(self.left, None)

            quiet = logging.getLogger()  # the quantiser's advice on pre-processing goes to the root logger
            level, quiet.level = quiet.level, logging.ERROR
            try:
                quantize_static(str(fp32), str(tmp), Photos(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                op_types_to_quantize=["MatMul", "Gemm", "Conv"])
            finally:
                quiet.level = level
    return out


def ort_forward(model: Path | bytes, per_image: bool = True) -> Forward:
    """An ONNX Runtime forward over a model file, or its bytes (what a Ray worker is handed). `per_image` (dynamic int8):
    that quantisation scales each activation tensor by its own range, and a batch is one tensor, so an image's embedding
    would depend on the other images of its batch (cosine 0.991 between an image embedded alone and in a batch of 32,
    on AVX2); every image then runs on its own, the images of a batch in parallel on single-threaded runs (as fast here
    as one batch on all threads), and a lone image (a query) on all threads. Otherwise a batch is one run."""
    import onnxruntime as ort

    threads = max(1, torch.get_num_threads())

    def session(intra: int):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads, opts.inter_op_num_threads = intra, 1
        # idle threads must not spin: the two sessions take turns on the same cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts,
                                    providers=["CPUExecutionProvider"])

    alone = session(threads)
    if not per_image:
        return lambda pixels: alone.run(None, {"pixels": pixels.numpy()})[0]
    each = session(1) if threads > 1 else alone
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None

    def run(pixels: torch.Tensor) -> np.ndarray:
        x = pixels.numpy()
        if len(x) == 1 or pool is None:
            return np.concatenate([alone.run(None, {"pixels": x[i:i + 1]})[0] for i in range(len(x))])
        return np.concatenate(list(pool.map(lambda i: each.run(None, {"pixels": x[i:i + 1]})[0], range(len(x)))))

    return run


def openvino_forward(path: Path) -> Forward:
    """The exported fp32 model compiled by OpenVINO for this CPU (an optional candidate: `pip install openvino`)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                          "INFERENCE_NUM_THREADS": max(1, torch.get_num_threads())})
    return lambda pixels: compiled(pixels.numpy())[0]


def torch_forward(forward, bf16: bool) -> Forward:
    @torch.inference_mode()
    def run(pixels: torch.Tensor) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return forward(pixels).float().numpy()
    return run


def onnx_forward(name: str, model, forward, crop: int, model_key: str, calibration: np.ndarray | None = None) -> Forward:
    """Runtime `name` (an ONNX Runtime one, or openvino) over its cached model; a damaged cached file is made again, once."""
    def make():
        path = onnx_model("onnx-fp32" if name == "openvino" else name, model, forward, crop, model_key, calibration)
        return openvino_forward(path) if name == "openvino" else ort_forward(path, per_image=ONNX[name][1])

    try:
        return make()
    except VibeError:
        raise
    except Exception:  # noqa: BLE001 - ONNX Runtime raises its own types for a truncated or foreign file
        onnx_path(model_key, "onnx-fp32" if name == "openvino" else name).unlink(missing_ok=True)
        return make()


def int8_forward(model, forward, crop: int, model_key: str) -> Forward:
    return onnx_forward("int8", model, forward, crop, model_key)


def make_forward(name: str, model, forward, crop: int, model_key: str, calibration: np.ndarray | None = None) -> Forward:
    if name in ONNX or name == "openvino":
        return onnx_forward(name, model, forward, crop, model_key, calibration)
    return torch_forward(forward, bf16=name == "bf16")


def _probe(crop: int) -> torch.Tensor:
    """Image-like probe pixels: smooth colour fields with edges, normalised like CLIP's input."""
    g = torch.Generator().manual_seed(0)
    low = torch.rand(PROBE_BATCH, 3, 8, 8, generator=g)
    smooth = torch.nn.functional.interpolate(low, size=(crop, crop), mode="bilinear", align_corners=False)
    edges = (torch.rand(PROBE_BATCH, 1, crop, crop, generator=g) > 0.98).float()
    return (smooth * 0.9 + edges * 0.1 - 0.45) / 0.27


def _speed(fn: Forward, pixels: torch.Tensor, rounds: int = 2) -> float:
    fn(pixels)  # warm-up (ONNX Runtime plans its kernels on the first run)
    t = time.perf_counter()
    for _ in range(rounds):
        fn(pixels)
    return rounds * len(pixels) / (time.perf_counter() - t)


def _candidate_missing(name: str) -> str | None:
    """Why runtime `name` cannot run here, in a few words (None: it can)."""
    import importlib.util

    if name == "bf16" and not bf16_native():
        return "this CPU has no native bf16 (AVX512-BF16 or AMX)"
    if name in ONNX and not ort_available():
        return "it needs ONNX Runtime (pip install -r requirements.txt)"
    if name == "openvino" and (not ort_available() or importlib.util.find_spec("openvino") is None):
        return "it is optional (pip install openvino)"
    return None


def choose(model, forward, crop: int, model_key: str, requested: str = "auto",
           photos: torch.Tensor | None = None) -> tuple[RuntimeChoice, Forward]:
    """The runtime for this backbone on this machine (see the module doc). `requested` forces one. `photos`: real
    photos, preprocessed (at least 48): int8-static measures its activation ranges on the first 32, and the probe
    times and checks every candidate on the next 16 (without them, image-like synthetic pixels do both)."""
    if requested not in ("auto", *RUNTIMES):
        raise VibeError(f"precision must be auto, {', '.join(RUNTIMES)}, not {requested!r}.")
    probe, calibration = _probe(crop), _probe(crop).numpy()
    if photos is not None and len(photos) >= PROBE_BATCH + 32:
        calibration, probe = photos[:32].numpy(), photos[32:32 + PROBE_BATCH]
    if requested != "auto":
        why = _candidate_missing(requested)
        if why:
            raise VibeError(f"precision {requested} was asked for, but {why}: use auto, or fp32.")
        return RuntimeChoice(requested, "asked for", None, None, {}), make_forward(
            requested, model, forward, crop, model_key, calibration)
    key = hashlib.blake2b(json.dumps([CANDIDATES_VERSION, model_key, cpu_flags(), torch.__version__, _ort_version(),
                                      torch.get_num_threads(), photos is not None]).encode(), digest_size=8).hexdigest()
    remembered = cache_dir() / f"{model_key}-choice-{key}.json"
    try:
        choice = RuntimeChoice(**json.loads(remembered.read_text()))
        return choice, make_forward(choice.name, model, forward, crop, model_key, calibration)
    except (OSError, ValueError, TypeError, VibeError):
        pass
    choice, fn = _measure(model, forward, crop, model_key, probe, calibration)
    try:
        write_json(remembered, choice.to_dict())
    except OSError:
        pass  # a read-only home: measured again next time, nothing else changes
    return choice, fn


def _ort_version() -> str:
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return ""


def _measure(model, forward, crop: int, model_key: str, pixels: torch.Tensor,
             calibration: np.ndarray) -> tuple[RuntimeChoice, Forward]:
    fns, skipped = {"fp32": torch_forward(forward, False)}, []
    for name in RUNTIMES[1:]:
        why = _candidate_missing(name)
        if why:
            skipped.append(f"not {name}: {why}")
            continue
        try:
            fns[name] = make_forward(name, model, forward, crop, model_key, calibration)
        except Exception as e:  # noqa: BLE001 - an export or quantisation this graph does not take: not a candidate
            skipped.append(f"{name} unavailable ({type(e).__name__})")
    exact = l2_normalize(fns["fp32"](pixels))
    speed, cosine = {}, {}
    for name, fn in fns.items():
        speed[name] = _speed(fn, pixels)
        cosine[name] = float((l2_normalize(fn(pixels)) * exact).sum(1).min())
    good = [n for n in fns if cosine[n] >= MIN_COSINE]
    best = max(good, key=speed.get)
    others = ", ".join(f"{n} {speed[n]:.1f}/s (cos {cosine[n]:.4f})" for n in fns if n != best)
    why = (f"fastest on a {PROBE_BATCH}-image probe with cosine >= {MIN_COSINE} to fp32 on this CPU "
           f"({', '.join(cpu_flags()) or 'no flags read'}, bf16 native: {bf16_native()}): {best} {speed[best]:.1f}/s; "
           f"{others}" + (f"; {'; '.join(skipped)}" if skipped else ""))
    return RuntimeChoice(best, why, speed[best] / speed["fp32"], cosine[best],
                         {n: round(speed[n], 2) for n in fns} | {f"{n}_cosine": round(cosine[n], 5) for n in fns}), fns[best]
