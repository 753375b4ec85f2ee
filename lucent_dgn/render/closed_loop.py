"""Closed-loop image search for a target outside torch (a recorded neuron): ask for images, tell
their scores, resume after a crash.

    loop = ClosedLoop(DGNImage(G, init="stats", lower=lo, upper=hi), CMAES(seed=0),
                      checkpoint="neuron7.npz")       # resumes when the file exists
    while loop.generation < 40:
        images = loop.ask()                            # (P, N, H, W, 3) RGB in [0, 1]
        scores = rig.show(images)                      # (P, N), higher = stronger response
        loop.tell(scores)                              # checkpointed atomically
    loop.best_images                                   # (N, H, W, 3)

The search is the same object that :func:`lucent_dgn.render` runs (:mod:`.search`); here the loop
belongs to the caller. The checkpoint (one ``.npz`` file: numbers and arrays, loaded without
pickle) holds the search state, every score told so far, and the parameterization's start, and is
replaced atomically after each :meth:`ClosedLoop.tell`; a loop built again with the same
parameterization, optimizer options and checkpoint path continues where the last tell left off and
produces bit-identical candidates.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Union

import numpy as np
import torch

from .._io import atomic_write_bytes
from ..errors import ConfigError, CorruptWeightsError, ShapeError, describe
from ..objectives.black_box import check_scores
from ..parameterizations.base import Parameterization
from ._lbfgs_common import box_bounds
from .search import SearchOptimizer

__all__ = ["ClosedLoop", "save_state", "load_state"]

log = logging.getLogger(__name__)

_META = "__meta__"
FORMAT = "lucent_dgn.search/1"


def save_state(path: Union[str, os.PathLike], state: Dict[str, Any]) -> Path:
    """Write a state dict (numbers, strings, lists, dicts, None and numpy arrays) as one ``.npz``
    file, atomically: arrays and numpy scalars as entries, everything else as JSON."""
    arrays, meta = {}, {"format": FORMAT}
    for key, value in state.items():
        if isinstance(value, (np.ndarray, np.generic)):
            arrays[key] = np.asarray(value)
        else:
            meta[key] = value
    arrays[_META] = np.array(json.dumps(meta))
    return atomic_write_bytes(path, lambda fh: np.savez(fh, **arrays))


def load_state(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Read :func:`save_state`'s file (no pickle). Raises CorruptWeightsError for another file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data[_META]))
            state = {k: data[k] for k in data.files if k != _META}
    except (OSError, ValueError, KeyError) as err:
        raise CorruptWeightsError(describe("checkpoint", "a search state written by ClosedLoop",
                                           f"'{path}' ({err})", raw=True)) from None
    if meta.pop("format", None) != FORMAT:
        raise CorruptWeightsError(describe("checkpoint", f"a file of format {FORMAT}", f"'{path}'", raw=True))
    state.update(meta)
    return state


class ClosedLoop:
    """Ask/tell search over a parameterization's images, for a target that only returns scores.

    Args:
        param: what produces the images (e.g. :class:`~lucent_dgn.DGNImage`; N = its batch size,
            each item is an independent search). Its variable is the start; its ``bounds()`` are
            respected by every candidate. After each tell, its variable holds the best candidates.
        optimizer: a :class:`~lucent_dgn.CMAES`, :class:`~lucent_dgn.GeneticSearch` or
            :class:`~lucent_dgn.RandomSearch`.
        checkpoint: path of the state file, written atomically after each tell; when it exists,
            the loop resumes from it (the optimizer's options must match). None: no file.
        images: ``"numpy"`` (default) or ``"torch"``: the type :meth:`ask` returns.

    Attributes: ``generation``, ``scores`` (G, P, N) every score told, ``best_scores`` (N,).
    """

    def __init__(self, param: Parameterization, optimizer: SearchOptimizer,
                 checkpoint: Union[str, os.PathLike, None] = None, images: str = "numpy") -> None:
        if not isinstance(param, Parameterization) or not isinstance(getattr(param, "variable", None),
                                                                     torch.nn.Parameter):
            raise ConfigError(describe("param", "a lucent_dgn Parameterization with a `variable`",
                                       type(param).__name__))
        if not isinstance(optimizer, SearchOptimizer):
            raise ConfigError(describe("optimizer", "CMAES, GeneticSearch or RandomSearch", type(optimizer).__name__))
        if images not in ("numpy", "torch"):
            raise ConfigError(describe("images", "'numpy' or 'torch'", images))
        self.param, self.optimizer, self.images = param, optimizer, images
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        var = param.variable
        self._shape, self.batch_size = tuple(var.shape), int(var.shape[0])
        self._scores: List[np.ndarray] = []
        if self.checkpoint is not None and self.checkpoint.exists():
            self._resume(load_state(self.checkpoint))
        else:
            box = box_bounds(_Bounds(param), torch.float64)
            lower, upper = (None, None) if box is None else (b.cpu().reshape(self.batch_size, -1).numpy() for b in box)
            x0 = var.detach().to("cpu", torch.float64).reshape(self.batch_size, -1).numpy()
            optimizer.start(x0, lower, upper)
            self._write_variable()

    # ------------------------------------------------------------------------------- loop
    @property
    def generation(self) -> int:
        """Generations told so far."""
        return self.optimizer.generation

    def ask(self) -> Union[np.ndarray, torch.Tensor]:
        """This generation's images: (P, N, H, W, 3) RGB clipped to [0, 1] (float32 numpy, or a tensor
        with ``images="torch"``). Asking again before :meth:`tell` returns the same images."""
        cand = self.optimizer.ask()
        var = self.param.variable
        flat = torch.from_numpy(cand.reshape((-1,) + self._shape[1:])).to(var.device, var.dtype)
        with torch.no_grad():
            rgb = self.param.to_rgb(torch.func.functional_call(self.param, {"variable": flat}, ())).clamp(0.0, 1.0)
        rgb = rgb.reshape((cand.shape[0], self.batch_size) + tuple(rgb.shape[1:]))
        return rgb.float().cpu().numpy() if self.images == "numpy" else rgb

    def tell(self, scores: Any) -> None:
        """Scores (P, N) of the asked images, higher = better ((P,) when N = 1). Raises ShapeError
        for another shape and NonFiniteLossError for NaN or infinite scores; then updates the search,
        writes the best candidates into ``param.variable`` and the checkpoint."""
        p, n = self.optimizer.popsize, self.batch_size
        if isinstance(scores, torch.Tensor):
            scores = scores.detach().cpu().numpy()
        values = np.asarray(scores, dtype=np.float64) if not isinstance(scores, (str, bytes)) else scores
        if n == 1 and getattr(values, "shape", None) == (p,):
            values = values.reshape(p, 1)
        if getattr(values, "shape", None) != (p, n):
            raise ShapeError(describe("scores", f"an array of shape ({p}, {n}) (candidates, items)",
                                      f"shape {getattr(values, 'shape', type(scores).__name__)}", raw=True))
        values = check_scores(values.reshape(-1), p * n).reshape(p, n)
        self.optimizer.tell(-values)
        self._scores.append(values)
        self._write_variable()
        if self.checkpoint is not None:
            self.save(self.checkpoint)

    # ------------------------------------------------------------------------------- results
    @property
    def scores(self) -> np.ndarray:
        """(G, P, N) every score told, in order."""
        p = self.optimizer.popsize
        return np.stack(self._scores) if self._scores else np.zeros((0, p, self.batch_size))

    @property
    def best_scores(self) -> np.ndarray:
        """(N,) the best score told so far per item (-inf before the first tell)."""
        return -self.optimizer.best_loss

    @property
    def best_images(self) -> np.ndarray:
        """(N, H, W, 3) RGB in [0, 1]: the images of the best candidates so far."""
        with torch.no_grad():
            return self.param.to_rgb(self.param()).clamp(0.0, 1.0).float().cpu().numpy()

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write the loop's state to ``path`` atomically (done after every tell when ``checkpoint`` is set)."""
        state = self.optimizer.state_dict()
        state["loop.scores"] = self.scores
        state["loop.shape"] = list(self._shape)
        return save_state(path, state)

    def _resume(self, state: Dict[str, Any]) -> None:
        if list(state.get("loop.shape", [])) != list(self._shape):
            raise ConfigError(describe("param", f"a variable of shape {tuple(state.get('loop.shape', ()))} "
                                       f"(the checkpoint's)", self._shape))
        scores = np.asarray(state.pop("loop.scores"))
        state.pop("loop.shape")
        self.optimizer.load_state_dict(state)
        self._scores = [s for s in scores]
        self._write_variable()
        log.info("resumed the search from %s at generation %d", self.checkpoint, self.generation)

    def _write_variable(self) -> None:
        with torch.no_grad():
            self.param.variable.copy_(torch.from_numpy(self.optimizer.best_x).reshape(self._shape))


class _Bounds:
    """The minimum of a Problem that :func:`box_bounds` reads."""

    def __init__(self, param: Parameterization) -> None:
        self.param = param

