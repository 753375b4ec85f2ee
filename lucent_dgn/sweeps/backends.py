"""Where a sweep's work items run: this process, a local process pool, or Ray (:mod:`.ray_backend`).

Every backend has ``run(config, items) -> iterator of ItemResult`` (in completion order), loads
the model once per worker, gives each worker ``config.threads`` torch threads, and keeps at most
two work items per worker in flight (back-pressure: results are written as they come, and a huge
sweep never queues all its items at once).
"""
from __future__ import annotations

import contextlib
import logging
from collections import deque
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .spec import WorkItem
from .work import ItemResult, Worker, WorkerConfig

__all__ = ["InProcess", "ProcessPool", "IN_FLIGHT_PER_WORKER"]

log = logging.getLogger(__name__)

#: Work items queued per worker at a time.
IN_FLIGHT_PER_WORKER = 2


@contextlib.contextmanager
def preserved_process_state(threads: int) -> Iterator[None]:
    """Set torch's thread count for the duration; restore it and torch's and numpy's global RNGs."""
    saved_threads = torch.get_num_threads()
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved_threads)
        torch.random.set_rng_state(torch_state)
        np.random.set_state(numpy_state)


class InProcess:
    """Render in this process, one item after the other (the default; no extra dependency).

    Args:
        preloaded: the driver's ``(model, generator)``, reused instead of loading them again.
    """

    name = "in-process"
    workers = 1

    def __init__(self, preloaded: Optional[Tuple[nn.Module, Optional[nn.Module]]] = None) -> None:
        self.preloaded = preloaded

    def run(self, config: WorkerConfig, items: Sequence[WorkItem]) -> Iterator[ItemResult]:
        with preserved_process_state(config.threads):
            worker = Worker(config, self.preloaded)
            for item in items:
                yield worker.run(item)


_POOL_WORKER: Optional[Worker] = None


def _init_pool_worker(config: WorkerConfig) -> None:
    global _POOL_WORKER
    torch.set_num_threads(config.threads)
    _POOL_WORKER = Worker(config)


def _run_pool_item(item: WorkItem) -> ItemResult:
    return _POOL_WORKER.run(item)


class ProcessPool:
    """A local pool of ``workers`` processes (``spawn``), each loading the model once.

    A worker that dies (killed, out of memory) breaks the pool: it is started again, at most
    ``max_restarts`` times, and the items that were in flight are run again.

    Args:
        workers: number of processes (>= 1).
        max_restarts: pool restarts after a worker died before the sweep stops (a rerun resumes).
    """

    name = "process-pool"

    def __init__(self, workers: int, max_restarts: int = 2) -> None:
        self.workers = int(workers)
        self.max_restarts = int(max_restarts)

    def run(self, config: WorkerConfig, items: Sequence[WorkItem]) -> Iterator[ItemResult]:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        pending, restarts = deque(items), 0
        while pending:
            executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_init_pool_worker, initargs=(config,))
            inflight = {}
            broken = False
            try:
                while (pending or inflight) and not broken:
                    while pending and len(inflight) < IN_FLIGHT_PER_WORKER * self.workers:
                        item = pending.popleft()
                        inflight[executor.submit(_run_pool_item, item)] = item
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for future in done:
                        item = inflight.pop(future)
                        try:
                            result = future.result()
                        except BrokenProcessPool:
                            broken = True
                            pending.appendleft(item)
                            continue
                        yield result
            finally:
                executor.shutdown(wait=broken, cancel_futures=True)
            if broken:
                pending.extendleft(inflight.values())
                restarts += 1
                if restarts > self.max_restarts:
                    raise RuntimeError(f"process-pool workers died {restarts} times; stopping (a rerun resumes)")
                log.warning("a process-pool worker died; restarting the pool and rerunning %d item(s)",
                            len(inflight) + 1)
