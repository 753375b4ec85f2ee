"""Base class of parameterizations: what the optimizer changes and how it becomes a model input."""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
from torch import nn

from ..spaces import ImageSpace

__all__ = ["Parameterization", "Bounds"]

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

    Attributes:
        model_space: an optional declared model input space (None = decided per render).
    * :meth:`lucent_param_f` adapts it to Lucent's ``param_f`` contract.
    """

    variable: nn.Parameter
    model_space: Optional[ImageSpace] = None

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

    def lucent_param_f(self) -> Callable[[], Tuple[List[torch.Tensor], Callable[[], torch.Tensor]]]:
        """A Lucent ``param_f``: ``param_f() -> (params, image_f)``; ``image_f()`` is RGB in [0, 1] NCHW.

        Use with ``lucent.optvis.render.render_vis(model, objective, param_f=...)`` and
        ``preprocess=True`` for torchvision models (Lucent then normalises with ImageNet statistics).
        """
        def param_f():
            def image_f() -> torch.Tensor:
                return self.to_rgb().permute(0, 3, 1, 2)
            return self.tensors(), image_f
        return param_f
