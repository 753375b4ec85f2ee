"""cnnpref's gradient descent with momentum, as an optimizer of the render loop.

One outer step ``t`` (0-based) of :meth:`MomentumGD.run`, in cnnpref's order (spec 3.3, 5.3):

1. ``problem.begin_step(t)`` (draws the step's jitter), ``problem.evaluate()`` -> gradient ``g``.
2. ``g <- g / mean|g|`` per batch item (items whose mean is 0 are left as they are).
3. ``v <- mu_t v + g``;  ``x <- x - lr_t v``  (heavy ball, no dampening, ``v_0 = 0``).
4. Pixel clipping, each when ``(t + 1) % every == 0``: extreme values, small norms, small
   contributions (``x * g`` with this step's normalised ``g``).
5. Decay ``problem.param.decay_(d_t)`` (``x <- (1 - d) x`` in the parameterization's space).
6. Blur with ``sigma_t`` (when ``(t + 1) % blur_every == 0``).
7. ``problem.param.project_()`` (clamp to the bounds, e.g. generator code bounds).
8. Stop if ``problem.end_step(t)`` returns True.

Every hyperparameter is a number (constant) or a ``(start, end)`` pair evaluated with cnnpref's
linear schedule ``start + t (end - start) / n_steps`` (:mod:`.schedules`).

The image operations act on ``problem.param.variable`` itself, which for pixel
parameterizations is the (N, 3, H, W) image in the parameterization's own space (for cnnpref's
net space: BGR, mean-subtracted, so decay pulls towards the mean colour and "zeroed" pixels
become the mean colour, spec Q4). Nothing clips to the pixel range unless the parameterization
has bounds and ``project`` is True (cnnpref itself never clips, spec Q5).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from ..errors import ConfigError, describe
from . import image_ops
from .problem import Problem
from .schedules import Schedule, ScheduleLike, as_schedule

__all__ = ["MomentumGD", "normalize_per_item"]

_IMAGE_OPS = ("blur_sigma", "clip_extreme", "clip_small_norm", "clip_small_contribution")


def _check_every(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(describe(name, "a positive integer (apply when (t + 1) % every == 0)", value))
    return value


def normalize_per_item(g: torch.Tensor) -> torch.Tensor:
    """``g / mean|g|`` with the mean over all elements of each batch item (rows of zeros stay 0)."""
    shape = (g.shape[0],) + (1,) * (g.dim() - 1)
    m = g.reshape(g.shape[0], -1).abs().mean(dim=1).view(shape)
    return g / torch.where(m > 0, m, torch.ones_like(m))


class MomentumGD:
    """Gradient descent with momentum, gradient normalisation, decay, blur and pixel clipping.

    Defaults are those of cnnpref's ``prefer_img_gd`` (blur and clipping off here; cnnpref's
    function turns blur on with sigma 2 -> 0.5). For cnnpref's DGN-GD use ``decay=0.01`` and no
    image operations; the code bounds come from the parameterization via ``project``.

    Args:
        lr: learning rate schedule; default (2.0, 1e-10).
        momentum: momentum ``mu`` schedule; default 0.9.
        decay: multiplicative decay ``d`` schedule (``x <- (1 - d) x``); default 0.1.
        grad_normalize: divide each item's gradient by its mean absolute value; default True.
        blur_sigma: Gaussian blur sigma schedule in pixels (e.g. (2.0, 0.5)); None = no blur.
        blur_every: blur when ``(t + 1) % blur_every == 0``; default 1 (every step, as cnnpref).
        clip_extreme: percentage schedule ``e``: clip each image to ``[P_{e/2}, P_{100-e/2}]``;
            None = off (cnnpref's value when on: 1).
        clip_extreme_every: frequency; default 4.
        clip_small_norm: percentage schedule ``n``: zero pixels whose channel norm < P_n; None = off.
        clip_small_norm_every: frequency; default 4.
        clip_small_contribution: percentage ``c``: zero pixels whose norm of ``x * g`` < P_c;
            None = off.
        clip_small_contribution_every: frequency; default 4.
        project: call ``problem.param.project_()`` after each step; default True.
        faithful_jitter_momentum: reproduce cnnpref's jitter/momentum quirk (spec Q3): after the
            update the buffer holds ``mu v_old + roll(g, jitter_offsets)``, i.e. the newest
            gradient stays in the jittered frame. Default False (the buffer stays aligned).

    Attributes:
        velocity: the momentum buffer ``v`` (shape of the variable) after :meth:`run`, else None.
        schedules: the schedules used by the last :meth:`run`, by argument name.

    Raises:
        ConfigError: bad schedules or frequencies; blur/clipping on a variable that is not an
            image batch (N, C, H, W).
    """

    def __init__(self, lr: ScheduleLike = (2.0, 1e-10), momentum: ScheduleLike = (0.9, 0.9),
                 decay: ScheduleLike = (0.1, 0.1), grad_normalize: bool = True,
                 blur_sigma: Optional[ScheduleLike] = None, blur_every: int = 1,
                 clip_extreme: Optional[ScheduleLike] = None, clip_extreme_every: int = 4,
                 clip_small_norm: Optional[ScheduleLike] = None, clip_small_norm_every: int = 4,
                 clip_small_contribution: Optional[ScheduleLike] = None,
                 clip_small_contribution_every: int = 4, project: bool = True,
                 faithful_jitter_momentum: bool = False) -> None:
        self.specs: Dict[str, Optional[ScheduleLike]] = {
            "lr": lr, "momentum": momentum, "decay": decay, "blur_sigma": blur_sigma,
            "clip_extreme": clip_extreme, "clip_small_norm": clip_small_norm,
            "clip_small_contribution": clip_small_contribution,
        }
        for name, spec in self.specs.items():
            if spec is not None or name in ("lr", "momentum", "decay"):
                as_schedule(spec, 1, name)  # validate now, build per run
        self.every: Dict[str, int] = {
            "blur_sigma": _check_every(blur_every, "blur_every"),
            "clip_extreme": _check_every(clip_extreme_every, "clip_extreme_every"),
            "clip_small_norm": _check_every(clip_small_norm_every, "clip_small_norm_every"),
            "clip_small_contribution": _check_every(clip_small_contribution_every,
                                                    "clip_small_contribution_every"),
        }
        self.grad_normalize = bool(grad_normalize)
        self.project = bool(project)
        self.faithful_jitter_momentum = bool(faithful_jitter_momentum)
        self.velocity: Optional[torch.Tensor] = None
        self.schedules: Dict[str, Schedule] = {}

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.specs.items() if v is not None]
        return f"MomentumGD({', '.join(parts)})"

    # ------------------------------------------------------------------------------------ run
    def run(self, problem: Problem) -> None:
        """Optimise ``problem.param.variable`` in place for ``problem.n_steps`` outer steps.

        Args:
            problem: the render problem (see :class:`lucent_dgn.render.problem.Problem`).
        """
        var = problem.param.variable
        self.schedules = {name: as_schedule(spec, problem.n_steps, name)
                          for name, spec in self.specs.items() if spec is not None}
        enabled = [name for name in _IMAGE_OPS if name in self.schedules]
        if enabled and var.dim() != 4:
            raise ConfigError(describe(
                enabled[0], "None for a variable that is not an image batch (N, C, H, W)",
                f"a variable of shape {tuple(var.shape)}", "Blur and pixel clipping need a pixel "
                "parameterization; for generator codes use decay and the code bounds.", raw=True))
        v = torch.zeros_like(var, memory_format=torch.preserve_format)
        self.velocity = v
        for t in range(problem.n_steps):
            problem.begin_step(t)
            problem.evaluate()
            with torch.no_grad():
                self._step(problem, var, v, t)
            if problem.end_step(t):
                break

    def _gradient(self, var: torch.Tensor) -> torch.Tensor:
        g = var.grad if var.grad is not None else torch.zeros_like(var)
        return normalize_per_item(g) if self.grad_normalize else g

    def _step(self, problem: Problem, var: torch.Tensor, v: torch.Tensor, t: int) -> None:
        s = self.schedules
        g = self._gradient(var)
        v.mul_(s["momentum"](t)).add_(g)
        var.sub_(v, alpha=s["lr"](t))
        self._clip(var, g, t)
        if self.faithful_jitter_momentum:
            self._jitter_quirk(problem, var, v, g)
        problem.param.decay_(s["decay"](t))
        if self._due("blur_sigma", t):
            sigma = s["blur_sigma"](t)
            if sigma > 0:
                var.copy_(image_ops.gaussian_blur(var, sigma))
        if self.project:
            problem.param.project_()

    def _due(self, name: str, t: int) -> bool:
        return name in self.schedules and (t + 1) % self.every[name] == 0

    def _clip(self, var: torch.Tensor, g: torch.Tensor, t: int) -> None:
        s = self.schedules
        if self._due("clip_extreme", t):
            image_ops.clip_extreme_(var, s["clip_extreme"](t))
        if self._due("clip_small_norm", t):
            image_ops.clip_small_norm_(var, s["clip_small_norm"](t))
        if self._due("clip_small_contribution", t):
            image_ops.clip_small_contribution_(var, g, s["clip_small_contribution"](t))

    @staticmethod
    def _jitter_quirk(problem: Problem, var: torch.Tensor, v: torch.Tensor, g: torch.Tensor) -> None:
        """cnnpref Q3: leave the newest gradient in the jittered frame inside the buffer."""
        offsets: Optional[Tuple[int, int]] = getattr(problem, "jitter_offsets", None)
        if offsets is None or (offsets[0] == 0 and offsets[1] == 0):
            return
        if var.dim() != 4:
            raise ConfigError(describe("faithful_jitter_momentum", "False for a variable that is not an "
                                       "image batch (N, C, H, W)", f"shape {tuple(var.shape)}", raw=True))
        dy, dx = int(offsets[0]), int(offsets[1])
        v.sub_(g).add_(torch.roll(g, shifts=(dy, dx), dims=(-2, -1)))
