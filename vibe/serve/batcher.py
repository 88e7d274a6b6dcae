"""Dynamic batching: the preprocessed views of concurrent requests go through the encoder together, on one thread off
the event loop that runs the model and nothing else, so throughput under load approaches batch embedding while a lone
request waits no longer than `window`."""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import VibeError


class Overloaded(VibeError):
    """More requests are waiting for the model than the queue holds: the client should retry after `retry_after` s."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Job:
    encoder: object
    pixels: torch.Tensor  # (n, 3, side, side): the request's views as the model's input (Encoder.pixels)
    future: Future = field(default_factory=Future)


class Batcher:
    """`submit(encoder, pixels)` -> a Future of their (n, dim) embeddings. One worker thread takes the oldest job, waits
    up to `window` seconds for more (never past `max_batch` views), and embeds them in one forward pass. At most
    `max_queue` jobs wait; one more is refused (Overloaded) instead of the queue growing without end."""

    def __init__(self, max_batch: int = 32, window: float = 0.004, max_queue: int = 64):
        if max_batch < 1 or window < 0 or max_queue < 1:
            raise VibeError("max_batch and max_queue must be at least 1 and window not negative.")
        self.max_batch, self.window = max_batch, window
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._carry: _Job | None = None  # a job for another encoder, first of the next batch
        self.batches = self.views = 0  # counters for /v1/status and the load benchmark
        self._thread = threading.Thread(target=self._loop, name="vibe-batcher", daemon=True)
        self._thread.start()

    def submit(self, encoder, pixels: torch.Tensor) -> Future:
        job = _Job(encoder, pixels)
        if not len(pixels):
            job.future.set_result(np.zeros((0, encoder.dim), np.float32))
            return job.future
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Overloaded(f"The server is busy: {self._queue.maxsize} requests are already waiting for the model; "
                             "retry in a second.") from None
        return job.future

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _next(self, timeout: float | None) -> _Job | None:
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        return self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()

    def _loop(self) -> None:
        while True:
            first = self._next(None)
            if first is None:
                return
            jobs, n, deadline = [first], len(first.pixels), time.monotonic() + self.window
            while n < self.max_batch:
                try:
                    job = self._next(deadline - time.monotonic())
                except queue.Empty:
                    break
                if job is None:  # closing: finish this batch first
                    self._queue.put(None)
                    break
                if job.encoder is not first.encoder or n + len(job.pixels) > self.max_batch:
                    self._carry = job  # another build's encoder, or it would overflow the batch: it opens the next one
                    break
                jobs.append(job)
                n += len(job.pixels)
            self._run(jobs)

    def _run(self, jobs: list[_Job]) -> None:
        try:
            pixels = jobs[0].pixels if len(jobs) == 1 else torch.cat([j.pixels for j in jobs])
            emb = jobs[0].encoder.embed_many(pixels, batch_size=self.max_batch)
        except Exception as e:  # noqa: BLE001 - the error belongs to the requests that asked, not to the worker
            for j in jobs:
                j.future.set_exception(e)
            return
        self.batches, self.views = self.batches + 1, self.views + len(emb)
        start = 0
        for j in jobs:
            j.future.set_result(emb[start:start + len(j.pixels)])
            start += len(j.pixels)
