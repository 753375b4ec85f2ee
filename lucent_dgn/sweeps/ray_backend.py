"""The Ray backend (optional extra ``lucent-dgn[ray]``): one task per work item on long-lived actors.

Each actor is one worker: it loads the model once when it starts, uses ``threads`` CPUs (and one GPU when the device is CUDA), and receives
at most two items at a time. Ray restarts an actor whose process died and retries its items
(``max_restarts``, ``max_task_retries``); when that is exhausted the sweep stops and a rerun
resumes. Results travel back to the driver, which alone writes the dataset, so the nodes need no
shared file system.

``address``: ``"auto"`` connects to a running cluster (``RAY_ADDRESS`` or ``ray start`` on this
machine) and otherwise starts a local one; ``"local"`` always starts a local one; anything else is
a cluster address (``"10.0.0.1:6379"``, ``"ray://head:10001"``). A Ray session that is already
initialised in this process (``ray.init`` in a notebook) is used as it is and left running.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence

from ..errors import ConfigError, describe
from .backends import IN_FLIGHT_PER_WORKER
from .spec import WorkItem
from .work import ItemResult, Worker, WorkerConfig

__all__ = ["RayBackend", "ray_available"]

log = logging.getLogger(__name__)


def ray_available() -> bool:
    """True when Ray can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


class _RayWorker:
    """Actor body: a :class:`Worker` with the sweep's thread count."""

    def __init__(self, config: WorkerConfig) -> None:
        import torch
        torch.set_num_threads(config.threads)
        self.worker = Worker(config)

    def run(self, item: WorkItem) -> ItemResult:
        return self.worker.run(item)


class RayBackend:
    """Run work items on Ray actors.

    Args:
        address: ``"auto"``, ``"local"`` or a cluster address (see the module docstring).
        workers: number of actors; default: the cluster's CPUs // threads (GPUs for CUDA).
        max_restarts: restarts of a dead actor (and retries of its items) before the sweep stops.
    """

    name = "ray"

    def __init__(self, address: str = "auto", workers: Optional[int] = None, max_restarts: int = 2) -> None:
        if not ray_available():
            raise ConfigError(describe("ray", "used with Ray installed", address,
                                       "Install it with: pip install 'lucent-dgn[ray]'"))
        self.address = address
        self.workers = workers
        self.max_restarts = int(max_restarts)

    def _connect(self, cpus: int) -> bool:
        """Initialise Ray unless it is; True when this call did (and shutdown is ours)."""
        import ray
        if ray.is_initialized():
            return False
        local = dict(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        if self.address == "local":
            ray.init(**local)
        elif self.address == "auto":
            try:
                ray.init(address="auto", log_to_driver=False, logging_level=logging.WARNING)
            except ConnectionError:
                ray.init(**local)
        else:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
        return True

    def run(self, config: WorkerConfig, items: Sequence[WorkItem]) -> Iterator[ItemResult]:
        import ray
        cuda = config.device.startswith("cuda")
        started = self._connect((self.workers or max(1, (os.cpu_count() or 1) // config.threads)) * config.threads)
        actors: List[Any] = []
        try:
            resources = ray.cluster_resources()
            per_worker = "GPU" if cuda else "CPU"
            available = int(resources.get(per_worker, 0) // (1 if cuda else config.threads))
            n = self.workers or max(1, available)
            self.workers = n
            remote = ray.remote(_RayWorker).options(num_cpus=config.threads, num_gpus=1 if cuda else 0,
                                                    max_restarts=self.max_restarts,
                                                    max_task_retries=self.max_restarts)
            actors = [remote.remote(config) for _ in range(n)]
            load: Dict[int, int] = {i: 0 for i in range(n)}
            inflight: Dict[Any, tuple] = {}
            pending = list(reversed(items))
            while pending or inflight:
                while pending and min(load.values()) < IN_FLIGHT_PER_WORKER:
                    i = min(load, key=load.get)
                    item = pending.pop()
                    inflight[actors[i].run.remote(item)] = (item, i)
                    load[i] += 1
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    _, i = inflight.pop(ref)
                    load[i] -= 1
                    yield ray.get(ref)
        finally:
            for actor in actors:
                ray.kill(actor)
            if started:
                ray.shutdown()
