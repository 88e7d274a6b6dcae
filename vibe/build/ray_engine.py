"""Embedding on Ray Data (`build --engine ray`): a pool of actors, each loading the backbone once, embeds the images the
cache does not hold yet; the driver saves every batch to the same content-hash cache as the local engine as it
arrives, so local and Ray builds are interchangeable and a lost worker loses only the batches in flight."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import VibeError
from ..models.encoder import Encoder
from ..store.cache import EmbeddingStore, EmbedStats, cache_plan, fill_from_store, plan_line
from ..util.progress import Progress, silent

PACKAGE = Path(__file__).resolve().parent


class EmbedActor:
    """One Ray actor: the driver's encoder, once. On the int8 runtime it is rebuilt from the driver's
    `Encoder.worker_spec` (the ONNX model from the object store, no backbone load); on torch runtimes the backbone is
    loaded on the driver's runtime (fp32 or bf16) and checked against the driver's fingerprint."""

    def __init__(self, backbone: str, fingerprint: str, precision: str = "auto", threads: int = 1, spec: dict | None = None):
        import torch

        from ..models.backbone import bf16_native

        torch.set_num_threads(threads)
        if spec is not None:
            import ray

            self.encoder = Encoder.from_worker_spec({**spec, "onnx": ray.get(spec["onnx"])})
            return
        if precision == "bf16" and not bf16_native():
            precision = "auto"  # a worker without native bf16 picks its own fastest runtime (cosine >= 0.99 to fp32 too)
        self.encoder = Encoder(backbone, precision=precision)
        if self.encoder.fingerprint != fingerprint:
            raise RuntimeError(f"the worker loaded {backbone!r} with fingerprint {self.encoder.fingerprint}, the driver has "
                               f"{fingerprint}: the same backbone files must be reachable from every worker")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = [""] * len(batch["path"])
        emb = self.encoder.encode_images([str(p) for p in batch["path"]], batch_size=len(errors),
                                         on_error=lambda i, e: errors.__setitem__(i, str(e)))
        return {"key": batch["key"], "emb": np.nan_to_num(emb), "error": np.array(errors, dtype=object)}


def embed_on_ray(encoder: Encoder, paths: Sequence[Path], store: EmbeddingStore, address: str | None = None,
                 workers: int = 2, batch_size: int = 32, progress: Progress = silent,
                 runtime_env: dict | None = None, log=lambda line: None) -> tuple[np.ndarray, list[str | None], EmbedStats]:
    """Like vibe.store.embed_files, with the forward passes on Ray. Photos must be readable at the same paths from
    every worker (a shared file system, or a local Ray)."""
    try:
        import ray
    except ImportError:
        raise VibeError("--engine ray needs Ray: pip install -r requirements-scale.txt") from None
    hashes, todo, stats = cache_plan(paths, store)
    log(plan_line(paths, hashes, todo))
    progress("embed (ray)", 0, len(todo))
    if todo:
        started = not ray.is_initialized()
        if started:
            # a cluster gets this package shipped with the job; a local Ray's workers import it from the driver's
            # sys.path, which Ray hands them (packing and unpacking it cost each new worker about a second)
            env = {**({"py_modules": [str(PACKAGE)]} if address else {}), **(runtime_env or {})} or None
            try:
                ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                         log_to_driver=False, runtime_env=env, ignore_reinit_error=True)
            except Exception as e:  # noqa: BLE001 - no cluster at that address, a version mismatch...
                raise VibeError(f"Could not start or reach Ray ({type(e).__name__}: {str(e)[:160]}); check --ray-address, "
                                "or build with --engine local.") from None
        try:
            _run(ray, encoder, todo, store, stats, workers, batch_size, progress)
        finally:
            if started:
                ray.shutdown()
    out = fill_from_store(paths, hashes, store, stats, set(todo))
    store.compact()
    return out, hashes, stats


def _run(ray, encoder: Encoder, todo: dict[str, Path], store: EmbeddingStore, stats: EmbedStats, workers: int,
         batch_size: int, progress: Progress) -> None:
    keys = list(todo)
    spec = encoder.worker_spec()
    if spec is not None:
        spec["onnx"] = ray.put(spec["onnx"])  # once into the object store, read by every actor (on any node)
    ds = ray.data.from_items([{"key": k, "path": str(todo[k])} for k in keys], override_num_blocks=max(1, len(keys) // batch_size))
    with warnings.catch_warnings():
        # Ray 2.60 (pinned) deprecates passing actor options through **ray_remote_args and names no parameter for
        # these two yet; its own default restarts a dying actor without end, where two tries then one error are wanted
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        ds = ds.map_batches(EmbedActor, fn_constructor_kwargs={"backbone": encoder.name, "fingerprint": encoder.fingerprint,
                                                                     "precision": encoder.precision, "spec": spec},
                            batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
                            batch_format="numpy", max_restarts=2, max_task_retries=2)  # a dying worker: restarted, retried
    done = 0
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            good = batch["error"] == ""
            store.add([str(k) for k in batch["key"][good]], batch["emb"][good])  # saved as it arrives
            stats.embedded += int(good.sum())
            stats.errors.update({str(k): str(e) for k, e in zip(batch["key"][~good], batch["error"][~good])})
            done += len(good)
            progress("embed (ray)", done, len(keys))
    except Exception as e:  # noqa: BLE001 - retries exhausted: one message; what was saved stays in the cache
        raise VibeError(f"The Ray embedding failed after retries ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                        f"The {stats.embedded} embeddings saved before are kept in the cache: rebuild to continue "
                        "(with --engine ray or --engine local).") from None
