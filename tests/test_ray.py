"""`build --engine ray`: Ray Data embeds into the same cache as the local engine, with the same vectors, and a worker
that dies mid-build loses nothing. Runs on a local Ray with 2 workers (Ray is installed by the README's test command)."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE

from vibe.errors import VibeError
from vibe.store.cache import EmbeddingStore, embed_files

ray = pytest.importorskip("ray", reason="Ray is the optional scale extra (pip install -r requirements-scale.txt)")


def _die_in_some_batches():
    """A worker setup hook: with $VIBE_TEST_NO_BACKBONE, loading a backbone in the worker raises. The actor's first
    call in each worker process, for photos listed in $VIBE_TEST_DIE_ON,
    kills the process (as an OOM kill or a lost node would) - once per photo if $VIBE_TEST_DIE_ONCE names a folder
    where it leaves a mark, else every time."""
    import vibe.build.ray_engine as engine

    if os.environ.get("VIBE_TEST_NO_BACKBONE"):  # a worker that would load the backbone itself fails loudly
        import vibe.models.encoder

        def refuse(name):
            raise RuntimeError(f"the worker loaded the backbone {name!r}")

        vibe.models.encoder.load_parts = refuse
    poison = set(filter(None, os.environ.get("VIBE_TEST_DIE_ON", "").split("|")))
    marks = os.environ.get("VIBE_TEST_DIE_ONCE")
    original = engine.EmbedActor.__call__

    def call(self, batch):
        for p in batch["path"]:
            name = Path(str(p)).name
            if name in poison:
                if marks is None:
                    os._exit(1)
                mark = Path(marks) / name
                if not mark.exists():
                    mark.touch()
                    os._exit(1)
        return original(self, batch)

    engine.EmbedActor.__call__ = call


@pytest.fixture(scope="module")
def local_ray():
    from ray import cloudpickle  # Ray's own copy pickles the setup hook

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hook travels by value: workers cannot import tests
    yield
    if ray.is_initialized():
        ray.shutdown()


def _start(env: dict) -> None:
    import vibe

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"py_modules": [str(Path(vibe.__file__).parent)], "env_vars": env,
                          "worker_process_setup_hook": _die_in_some_batches})


def _photos(tmp_path: Path, n: int) -> list[Path]:
    out = []
    for p in sorted((SAMPLE / "images").iterdir())[:n]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
        out.append(tmp_path / p.name)
    return out


def test_ray_gives_the_local_vectors_and_survives_a_worker_death(local_ray, tiny_encoder, tmp_path):
    from vibe.build.ray_engine import embed_on_ray

    paths = _photos(tmp_path, 40)
    marks = tmp_path / "marks"
    marks.mkdir()
    _start({"VIBE_TEST_DIE_ON": paths[17].name, "VIBE_TEST_DIE_ONCE": str(marks)})
    store = EmbeddingStore(tmp_path / "ray-cache", tiny_encoder.fingerprint, tiny_encoder.dim)
    steps = []
    emb, hashes, stats = embed_on_ray(tiny_encoder, paths, store, workers=2, batch_size=8,
                                      progress=lambda stage, done, total: steps.append((done, total)))
    assert (marks / paths[17].name).exists(), "the worker never died: this test would not show a retry"
    assert stats.embedded == 40 and not stats.failed and steps[-1] == (40, 40)

    local, local_hashes, _ = embed_files(tiny_encoder, paths, EmbeddingStore(tmp_path / "local", tiny_encoder.fingerprint,
                                                                               tiny_encoder.dim))
    assert hashes == local_hashes
    assert float((emb * local).sum(axis=1).min()) >= 0.9999

    # interchangeable: the Ray-filled cache serves a local build without embedding anything
    again, _, stats2 = embed_files(tiny_encoder, paths, EmbeddingStore(tmp_path / "ray-cache", tiny_encoder.fingerprint,
                                                                        tiny_encoder.dim))
    assert stats2.embedded == 0 and stats2.reused == 40
    np.testing.assert_array_equal(again, emb)


def test_a_worker_that_keeps_dying_ends_with_one_error_and_keeps_what_was_saved(local_ray, tiny_encoder, tmp_path):
    from vibe.build.ray_engine import embed_on_ray

    paths = _photos(tmp_path, 24)
    _start({"VIBE_TEST_DIE_ON": paths[-1].name})  # the last batch kills its worker every time it is tried
    store = EmbeddingStore(tmp_path / "cache", tiny_encoder.fingerprint, tiny_encoder.dim)
    with pytest.raises(VibeError, match="failed after retries") as err:
        embed_on_ray(tiny_encoder, paths, store, workers=2, batch_size=8)
    assert "\n" not in str(err.value)
    reopened = EmbeddingStore(tmp_path / "cache", tiny_encoder.fingerprint, tiny_encoder.dim)
    saved = int(re.search(r"The (\d+) embeddings saved before are kept", str(err.value)).group(1))
    assert len(reopened) == saved  # what the message says was kept is on disk

    # the next build (local here) embeds only the rest
    _, _, stats = embed_files(tiny_encoder, paths, reopened)
    assert stats.embedded == 24 - saved and stats.reused == saved


def test_on_the_int8_runtime_workers_run_the_drivers_model_without_loading_the_backbone(local_ray, tiny_clip_dir, tmp_path):
    from vibe.build.ray_engine import embed_on_ray
    from vibe.models.encoder import Encoder

    encoder = Encoder(str(tiny_clip_dir), precision="int8")
    paths = _photos(tmp_path, 16)
    _start({"VIBE_TEST_NO_BACKBONE": "1"})
    emb, _, stats = embed_on_ray(encoder, paths, EmbeddingStore(tmp_path / "ray", encoder.fingerprint, encoder.dim),
                                 workers=2, batch_size=8)
    assert stats.embedded == 16 and not stats.failed
    local, _, _ = embed_files(encoder, paths, EmbeddingStore(tmp_path / "local", encoder.fingerprint, encoder.dim))
    assert float((emb * local).sum(axis=1).min()) >= 0.9999
