"""Black-box targets: a function ``images -> scores (N,)`` as an objective, and a simulated noisy
neuron to try a closed loop on before the rig.

:func:`black_box` reads only the model input (``T("input")``), so it needs no torch model at all:
the scores may come from an experiment rig, a remote service or a non-differentiable model. It is
meant for the gradient-free optimizers (:class:`~lucent_dgn.CMAES`, :class:`~lucent_dgn.GeneticSearch`,
:class:`~lucent_dgn.RandomSearch`) in :func:`lucent_dgn.render`; for a loop that shows images and
waits for responses use :class:`lucent_dgn.ClosedLoop`, which calls no function at all.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from lucent.optvis.objectives import Objective

from ..errors import ConfigError, NonFiniteLossError, ShapeError, describe
from ..spaces import ImageSpace, UnitSpace
from ._access import item_objective, read_activation, report_activation

__all__ = ["black_box", "check_scores", "to_display_rgb", "SimulatedNeuron"]

ScoreFn = Callable[[Any], Any]
IMAGE_KINDS = ("numpy", "torch")


def to_display_rgb(x: torch.Tensor, space: Optional[ImageSpace]) -> torch.Tensor:
    """(N, C, H, W) images in ``space`` (None: values on the 0-1 scale, grey or RGB) -> (N, H, W, 3)
    RGB clipped to [0, 1], the images a display shows."""
    space = space if space is not None else UnitSpace(1 if x.shape[1] == 1 else 3)
    return space.to_rgb01(x).clamp(0.0, 1.0).permute(0, 2, 3, 1)


def check_scores(scores: Any, n: int, arg: str = "scores") -> np.ndarray:
    """``scores`` as a float64 (n,) array; ShapeError for another shape, NonFiniteLossError for NaN/inf."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    try:
        values = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise ShapeError(describe(arg, f"{n} numbers (one score per image)", type(scores).__name__)) from None
    if values.shape != (n,):
        raise ShapeError(describe(arg, f"an array of shape ({n},), one score per image", f"shape {values.shape}",
                                  raw=True))
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise NonFiniteLossError(describe(arg, "finite numbers", f"{values[bad[0]]} for image(s) {bad[:10].tolist()}",
                                          "Drop or repeat failed trials before telling the scores.", raw=True))
    return values


class _BlackBox:
    def __init__(self, fn: ScoreFn, images: str, name: str) -> None:
        self.fn, self.images, self.name = fn, images, name
        self._last: Optional[tuple] = None  # (images tensor, its version, raw scores) of the last call

    def _score(self, x: torch.Tensor, arg: Any) -> Any:
        """The function's scores; a second call on the very same unchanged images (the render's
        validation reads the objective twice) reuses them, so a rig shows each image once."""
        last = self._last
        if last is not None and last[0] is x and last[1] == x._version and not torch.is_grad_enabled():
            return last[2]
        raw = self.fn(arg)
        self._last = (x, x._version, raw) if not torch.is_grad_enabled() else None
        return raw

    def __call__(self, T: Any) -> torch.Tensor:
        x = read_activation(T, "input")
        rgb = to_display_rgb(x.detach(), getattr(T, "input_space", None))  # (N, H, W, 3) in [0, 1]
        if torch.is_grad_enabled() and x.requires_grad and self.images == "numpy":
            raise ConfigError(describe("optimizer", "a gradient-free optimizer (CMAES, GeneticSearch, RandomSearch) "
                                       f"for the black box {self.name!r}", "one that needs gradients",
                                       "Scores computed on numpy images have no gradient; pass images='torch' and a "
                                       "differentiable function to use gradients.", raw=True))
        arg = rgb.float().cpu().numpy() if self.images == "numpy" else \
            to_display_rgb(x, getattr(T, "input_space", None))
        raw, n, label = self._score(x, arg), x.shape[0], f"{self.name}(images)"
        if self.images == "torch" and isinstance(raw, torch.Tensor) and tuple(raw.shape) == (n,) \
                and bool(torch.isfinite(raw.detach()).all()):
            scores = raw.to(x.dtype)  # keeps a differentiable function's graph
        else:
            scores = torch.as_tensor(check_scores(raw, n, label), dtype=x.dtype, device=x.device)
        report_activation(T, scores.detach())
        return -scores


def black_box(score_fn: ScoreFn, images: str = "numpy", name: Optional[str] = None) -> Objective:
    """An objective from a function that scores images (higher = better): the loss is ``-sum(scores)``.

    Args:
        score_fn: ``score_fn(images) -> scores``. ``images`` are the model inputs as displayed:
            RGB, (N, H, W, 3), values clipped to [0, 1], converted from the model's input space
            (``T.input_space``; 0-1 grey or RGB when unknown). Grey images have three equal
            channels. ``scores``: N finite numbers (array, list or tensor), one per image.
        images: ``"numpy"`` (default): float32 numpy arrays, the function is a black box;
            ``"torch"``: tensors on the render's device, and a differentiable function may be used
            with gradient optimizers.
        name: the name in messages (default: the function's name).

    Returns:
        A per-item Lucent ``Objective`` (:func:`~lucent_dgn.objectives.item_objective`) reading only
        ``"input"``: ``render(None, black_box(f), param, CMAES(), steps)`` needs no model. Its
        per-item losses are ``-score`` and it reports the scores as its activation, so a batch of N
        items runs N independent searches.

    Raises (when scores come back): ShapeError naming the function when they are not N numbers,
    NonFiniteLossError for NaN or infinite scores; ConfigError for numpy images under a gradient
    optimizer.
    """
    if not callable(score_fn):
        raise ConfigError(describe("score_fn", "a function images -> scores", type(score_fn).__name__))
    if images not in IMAGE_KINDS:
        raise ConfigError(describe("images", "'numpy' or 'torch'", images))
    label = name or getattr(score_fn, "__name__", type(score_fn).__name__)
    return item_objective(_BlackBox(score_fn, images, label), name=label, description=f"Black box [{label}]")


class SimulatedNeuron:
    """A unit of a torch model seen as a recorded neuron: images in, noisy responses out.

    ``neuron(images)`` takes what :func:`black_box` and :class:`~lucent_dgn.ClosedLoop` give a rig,
    RGB (N, H, W, 3) in [0, 1] (numpy or torch), converts them to the model's input space and returns
    the unit's activation plus Gaussian noise, float64 (N,). ``neuron.clean(images)`` gives the
    noise-free response.

    Args:
        model: the network (left unchanged; evaluated in eval mode without gradients).
        layer: a layer reference; ``unit``: index into its output without the batch dimension
            (an int for a (N, C) output or the channel's centre unit; a tuple for an exact unit).
        snr: signal-to-noise ratio: noise std = ``std(clean responses to reference) / snr``.
        reference: RGB images (M, H, W, 3) in [0, 1] whose response spread sets the noise
            (e.g. generator samples); required when ``noise_std`` is None.
        noise_std: the noise standard deviation directly (overrides ``snr``).
        seed: seed of the neuron's own noise generator.
    """

    def __init__(self, model: torch.nn.Module, layer: Any, unit: Union[int, Sequence[int]], snr: float = 1.0,
                 reference: Any = None, noise_std: Optional[float] = None, seed: int = 0) -> None:
        from ..layers import resolve_layer
        self.model, self.layer = model, resolve_layer(model, layer)[0]
        self.unit = unit
        self.space = getattr(model, "input_space", None)
        self._rng = np.random.default_rng(seed)
        if noise_std is None:
            if reference is None or not (isinstance(snr, (int, float)) and snr > 0):
                raise ConfigError(describe("snr, reference", "snr > 0 and reference images (or noise_std)",
                                           (snr, type(reference).__name__)))
            noise_std = float(np.std(self.clean(reference))) / float(snr)
        if not (isinstance(noise_std, (int, float)) and np.isfinite(noise_std) and noise_std >= 0):
            raise ConfigError(describe("noise_std", "a finite number >= 0", noise_std))
        self.noise_std = float(noise_std)

    def _pick(self, act: torch.Tensor) -> torch.Tensor:
        if isinstance(self.unit, (tuple, list)):
            return act[(slice(None),) + tuple(int(i) for i in self.unit)]
        act = act[:, int(self.unit)]
        while act.dim() > 1:  # the centre unit of a channel
            act = act.select(1, act.shape[1] // 2)
        return act

    @torch.no_grad()
    def clean(self, images: Any) -> np.ndarray:
        """Noise-free responses (N,) float64 to RGB images (N, H, W, 3) in [0, 1]."""
        from ..render.hooks import ActivationCapture, frozen
        rgb = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        ref = next(self.model.parameters(), None)
        rgb = rgb.to(ref.device if ref is not None else "cpu", ref.dtype if ref is not None else torch.float32)
        if rgb.dim() != 4 or rgb.shape[-1] != 3:
            raise ShapeError(describe("images", "RGB images (N, H, W, 3)", tuple(rgb.shape)))
        x = rgb.permute(0, 3, 1, 2)
        x = self.space.from_rgb01(x) if self.space is not None else x
        with frozen(self.model), ActivationCapture(self.model, [self.layer]) as cap:
            cap.run(x)
            return self._pick(cap.features[self.layer]).double().cpu().numpy().copy()

    def __call__(self, images: Any) -> np.ndarray:
        clean = self.clean(images)
        return clean + self.noise_std * self._rng.standard_normal(clean.shape)
