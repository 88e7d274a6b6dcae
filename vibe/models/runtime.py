"""How a CLIP image tower runs on this CPU: torch fp32, torch bf16 autocast (CPUs with native bf16), or ONNX Runtime
with int8 dynamic quantisation (every x86 CPU; VNNI where present). `auto` times each on a probe batch once per machine
and backbone, keeps the fastest whose embeddings stay within cosine 0.99 of fp32, and caches the choice (and the
quantised model) in VIBE_CACHE_DIR (default ~/.cache/vibe), so a process pays for the probe once per machine."""
from __future__ import annotations

import hashlib
import json
import os
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
from ..util.files import atomic_path, write_json
from ..util.vectors import l2_normalize
from .backbone import bf16_native

RUNTIMES = PRECISIONS[1:]  # all but auto
MIN_COSINE = 0.99
PROBE_BATCH = 16
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
    return Path(os.environ.get("VIBE_CACHE_DIR") or Path.home() / ".cache" / "vibe") / "runtime"


def cpu_flags() -> list[str]:
    """The instruction sets that decide which runtime is fastest."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set(next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []))
    return sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "fma"})


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


def int8_path(model_key: str) -> Path:
    """Where the int8 ONNX model of a network (its model_key) is cached."""
    return cache_dir() / f"{model_key}-int8.onnx"


def int8_model(model: torch.nn.Module, forward, crop: int, model_key: str) -> Path:
    """The image tower exported to ONNX and dynamically quantised to int8 (weights per channel), cached per model_key."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = int8_path(model_key)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fp32 = out.with_name(f".{model_key}-{os.getpid()}-fp32.onnx")
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on a graph it exports correctly
            torch.onnx.export(_Tower(forward, model).eval(), (torch.zeros(1, 3, crop, crop),), str(fp32),
                              input_names=["pixels"], output_names=["emb"], opset_version=17, dynamo=False,
                              dynamic_axes={"pixels": {0: "n"}, "emb": {0: "n"}})
        with atomic_path(out) as tmp:
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        fp32.unlink(missing_ok=True)
    return out


def ort_forward(model: Path | bytes) -> Forward:
    """An ONNX Runtime forward over a model file, or its bytes (what a Ray worker is handed). Dynamic int8 quantisation
    scales each activation tensor by its own range, and a batch is one tensor: an image's embedding would depend on
    the other images of its batch (cosine 0.991 between an image embedded alone and in a batch of 32, on AVX2). So
    every image runs on its own, the images of a batch in parallel on single-threaded runs (as fast here as one batch
    on all threads), and a lone image (a query) on all threads."""
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
    each = session(1) if threads > 1 else alone
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None

    def run(pixels: torch.Tensor) -> np.ndarray:
        x = pixels.numpy()
        if len(x) == 1 or pool is None:
            return np.concatenate([alone.run(None, {"pixels": x[i:i + 1]})[0] for i in range(len(x))])
        return np.concatenate(list(pool.map(lambda i: each.run(None, {"pixels": x[i:i + 1]})[0], range(len(x)))))

    return run


def torch_forward(forward, bf16: bool) -> Forward:
    @torch.inference_mode()
    def run(pixels: torch.Tensor) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return forward(pixels).float().numpy()
    return run


def int8_forward(model, forward, crop: int, model_key: str) -> Forward:
    """The cached int8 model in an ONNX Runtime session; a damaged cached file is made again, once."""
    path = int8_model(model, forward, crop, model_key)
    try:
        return ort_forward(path)
    except Exception:  # noqa: BLE001 - ONNX Runtime raises its own types for a truncated or foreign file
        path.unlink(missing_ok=True)
        return ort_forward(int8_model(model, forward, crop, model_key))


def make_forward(name: str, model, forward, crop: int, model_key: str) -> Forward:
    if name == "int8":
        return int8_forward(model, forward, crop, model_key)
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


def choose(model, forward, crop: int, model_key: str, requested: str = "auto") -> tuple[RuntimeChoice, Forward]:
    """The runtime for this backbone on this machine (see the module doc). `requested` forces one."""
    if requested not in ("auto", *RUNTIMES):
        raise VibeError(f"precision must be auto, {', '.join(RUNTIMES)}, not {requested!r}.")
    if requested == "bf16" and not bf16_native():
        raise VibeError("bf16 was asked for, but this CPU has no native bf16 (AVX512-BF16 or AMX): use auto, fp32 or int8.")
    if requested == "int8" and not ort_available():
        raise VibeError("int8 needs ONNX Runtime: pip install -r requirements.txt.")
    if requested != "auto":
        return RuntimeChoice(requested, "asked for", None, None, {}), make_forward(
            requested, model, forward, crop, model_key)
    key = hashlib.blake2b(json.dumps([model_key, cpu_flags(), torch.__version__, _ort_version(), torch.get_num_threads()])
                          .encode(), digest_size=8).hexdigest()
    remembered = cache_dir() / f"{model_key}-choice-{key}.json"
    try:
        choice = RuntimeChoice(**json.loads(remembered.read_text()))
        return choice, make_forward(choice.name, model, forward, crop, model_key)
    except (OSError, ValueError, TypeError):
        pass
    choice, fn = _measure(model, forward, crop, model_key)
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


def _measure(model, forward, crop: int, model_key: str) -> tuple[RuntimeChoice, Forward]:
    pixels = _probe(crop)
    fns = {"fp32": torch_forward(forward, False)}
    if bf16_native():
        fns["bf16"] = torch_forward(forward, True)
    skipped = []
    if ort_available():
        try:
            fns["int8"] = int8_forward(model, forward, crop, model_key)
        except Exception as e:  # noqa: BLE001 - an export the exporter cannot do: that runtime is simply not a candidate
            skipped.append(f"int8 unavailable ({type(e).__name__})")
    else:
        skipped.append("int8 needs onnxruntime")
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
                         {n: round(speed[n], 2) for n in fns}), fns[best]
