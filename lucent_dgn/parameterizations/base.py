"""Base class of parameterizations: what the optimizer changes and how it becomes a model input."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, List, Optional, Tuple

import torch
from torch import nn

from ..spaces import ImageSpace

__all__ = ["Parameterization", "Bounds", "call_stateless", "straight_through_clip"]

Bounds = Tuple[torch.Tensor, torch.Tensor]


class Parameterization(nn.Module):
    """A set of leaf tensors plus a differentiable map to the model's input.

    Subclasses hold exactly one optimised tensor, :attr:`variable` (an ``nn.Parameter`` of shape
    ``(N, ...)``, one row per batch item), and implement :meth:`forward`.

    Contract used by the render loop and the optimizers:

    * ``forward(space=None) -> Tensor (N, C, H, W)``: the image in ``space`` (the model's input
      space, which the render loop resolves per call and passes in); None = :attr:`model_space`
      when declared, else :attr:`native_space`. Nothing on the parameterization changes.
    * :attr:`native_space`: the space the parameterization produces images in by itself.
    * :meth:`bounds` -> ``(lower, upper)`` broadcastable to :attr:`variable`, or None.
    * :meth:`project_` clamps :attr:`variable` to the bounds (in place).
    * :meth:`decay_` applies ``v <- (1 - d) v`` in the parameterization's decay space.
    * :meth:`to_rgb` -> ``(N, H, W, 3)`` float RGB on the 0-1 scale (not clipped), for display.
    * :meth:`frozen_modules` lists modules used but not optimised (a generator); subclasses call
      them through :meth:`call_frozen`, so they stay untouched under Lucent's ``render_vis``.
    * :meth:`lucent_param_f` adapts it to Lucent's ``param_f`` contract (bounds projected,
      images clipped to [0, 1] with a straight-through gradient, frozen modules stateless).

    Attributes:
        model_space: an optional declared model input space (None = decided per render).
    """

    variable: nn.Parameter
    model_space: Optional[ImageSpace] = None
    _stateless_calls: bool = False  # True while lucent_param_f's image_f() runs (see call_frozen)

    @property
    def native_space(self) -> ImageSpace:
        """The :class:`~lucent_dgn.spaces.ImageSpace` of the images this parameterization makes."""
        raise NotImplementedError

    def target_space(self, space: Optional[ImageSpace] = None) -> ImageSpace:
        """``space``, else the declared :attr:`model_space`, else :attr:`native_space`."""
        if space is not None:
            return space
        return self.model_space if self.model_space is not None else self.native_space

    @property
    def batch_size(self) -> int:
        return int(self.variable.shape[0])

    def tensors(self) -> List[torch.Tensor]:
        """The leaf tensors to optimise (one: :attr:`variable`)."""
        return [self.variable]

    def bounds(self) -> Optional[Bounds]:
        """(lower, upper) tensors broadcastable to :attr:`variable`; None when unbounded."""
        return None

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp :attr:`variable` into its bounds, in place (no-op when unbounded)."""
        b = self.bounds()
        if b is not None:
            self.variable.clamp_(*b)

    @torch.no_grad()
    def decay_(self, d: float) -> None:
        """``variable <- (1 - d) * variable`` (subclasses may decay towards another centre)."""
        if d:
            self.variable.mul_(1.0 - d)

    def to_rgb(self, image: Optional[torch.Tensor] = None, space: Optional[ImageSpace] = None) -> torch.Tensor:
        """RGB (N, H, W, 3) on the 0-1 scale, unclipped: of ``image`` (given in ``space``, default
        :meth:`target_space`) or, when ``image`` is None, of the current state."""
        if image is None:
            image = self.forward(self.native_space)
            space = self.native_space
        return self.target_space(space).to_rgb01(image).permute(0, 2, 3, 1)

    def image_for_display(self) -> torch.Tensor:
        """The current image as (N, H, W, 3) float RGB, 0-1 scale, unclipped, detached."""
        with torch.no_grad():
            return self.to_rgb().detach()

    # -- frozen modules --------------------------------------------------------------------
    def frozen_modules(self) -> List[nn.Module]:
        """Modules this parameterization calls but never optimises (e.g. a generator); the render
        loop freezes them for the render. Call them through :meth:`call_frozen`."""
        return []

    def call_frozen(self, module: nn.Module, *args: Any) -> Any:
        """``module(*args)``; inside :meth:`lucent_param_f`'s ``image_f()``, a stateless call instead
        (:func:`call_stateless`: detached weights, eval mode, the module left exactly as it was)."""
        if self._stateless_calls:
            return call_stateless(module, *args)
        return module(*args)

    @contextlib.contextmanager
    def _stateless(self) -> Iterator[None]:
        previous = self._stateless_calls
        self._stateless_calls = True
        try:
            yield
        finally:
            self._stateless_calls = previous

    # -- Lucent ------------------------------------------------------------------------------
    def lucent_param_f(self) -> Callable[[], Tuple[List[torch.Tensor], Callable[[], torch.Tensor]]]:
        """A Lucent ``param_f`` for ``lucent.optvis.render.render_vis(model, objective, param_f=...)``.

        ``param_f() -> (params, image_f)``: ``params`` is :meth:`tensors` (handed to Lucent's
        optimizer), and ``image_f() -> Tensor (N, 3, H, W)`` is the current image as RGB in
        [0, 1] (:meth:`to_rgb`), Lucent's convention: with ``preprocess=True`` Lucent normalises it
        with torchvision's ImageNet statistics; for other input encodings pass your own transform
        and ``preprocess=False`` (e.g. ``transforms=[lambda x: x.mean(1, keepdim=True)]`` for a grey
        model). What ``image_f()`` does on each call:

        * **Bounds by projection.** If the parameterization has :meth:`bounds` (DGN code bounds,
          raw pixel range), every call first checks the tensor against them and, if any value is
          outside, clamps it into the box in place (without gradient). Lucent calls ``image_f()``
          at the start of every closure, i.e. after each optimizer step, and before every export,
          so every code the generator sees, and the final one, is inside the box, whatever torch
          optimizer Lucent is given (the check reads values, so fused optimizers and ``.data``
          writers, which do not bump the version counter, are covered too; it costs one host
          sync per call on a GPU). The initial value is clipped on the first call. For Adam/SGD
          this is projected gradient descent (cnnpref's DGN-GD clips likewise). For
          ``torch.optim.LBFGS`` it is a heuristic: the projection is not part of L-BFGS's model
          of the objective, so its line search and curvature pairs see a moved point; use
          :func:`lucent_dgn.render` with :class:`~lucent_dgn.LBFGSB` for exact bounded L-BFGS. A
          second call within one closure (an objective reading ``"input"``) finds the tensor in
          bounds and writes nothing, so values autograd saved stay valid.
        * **Images clipped to [0, 1], gradient straight through.** The image is clamped to [0, 1]
          (so Lucent's ``(x * 255).astype(uint8)`` export cannot wrap around) by a straight-through
          clip: the forward value is the clamp, the backward pass is the identity. Pixels pushed
          past 0 or 1 keep receiving gradient (a plain clamp would give them none and strand the
          code), but the model sees, and the export holds, the clipped image. Our own render
          loop never clips: it feeds the model the raw image.
        * **Frozen modules are called statelessly** (:func:`call_stateless`): the generator's
          weights are detached for the call, so no weight gradient is computed, stored (``.grad``
          stays None) or timed, and modules run in eval mode (a module in training mode is
          switched for the duration of the call only). Its ``requires_grad`` flags, buffers and
          hooks are never touched and its train/eval flags are as before whenever ``image_f()``
          returns: ``render_vis`` does not say when it ends, so nothing may wait to be restored.
        """
        def param_f() -> Tuple[List[torch.Tensor], Callable[[], torch.Tensor]]:
            tensors = self.tensors()
            bounds = self.bounds()

            def image_f() -> torch.Tensor:
                if bounds is not None:
                    _project_if_outside(self.variable, *bounds)
                with self._stateless():
                    rgb = self.to_rgb()
                return straight_through_clip(rgb, 0.0, 1.0).permute(0, 3, 1, 2)
            return tensors, image_f
        return param_f


@torch.no_grad()
def _project_if_outside(variable: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> None:
    """Clamp ``variable`` into ``[lower, upper]`` in place, only if some value is outside (so a
    tensor already in bounds is never written, and autograd's saved copies of it stay valid)."""
    if bool(((variable < lower) | (variable > upper)).any()):
        variable.clamp_(lower, upper)


def straight_through_clip(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``x.clamp(low, high)`` in value; the gradient passes unchanged (identity), clipped or not.

    ``clamp(x) + (x - x.detach())``: the second term is exactly 0 for finite ``x``, so the value
    is the clamp bit for bit, and its derivative is 1 everywhere.
    """
    return x.detach().clamp(low, high) + (x - x.detach())


def call_stateless(module: nn.Module, *args: Any) -> Any:
    """``module(*args)`` with detached weights and in eval mode, leaving ``module`` as it was.

    The call goes through :func:`torch.func.functional_call` with every parameter detached, so
    gradients reach ``args`` but no weight gradient is computed or accumulated, whatever the
    parameters' ``requires_grad``. Modules in training mode run in eval mode for the call only
    (Dropout off, BatchNorm on its running statistics, which are therefore never updated); their
    flags are restored before returning, also on error. Buffers are used as they are.
    """
    weights = {name: p.detach() for name, p in module.named_parameters()}
    training = [m for m in module.modules() if m.training]
    for m in training:
        m.training = False
    try:
        return torch.func.functional_call(module, weights, args)
    finally:
        for m in training:
            m.training = True
