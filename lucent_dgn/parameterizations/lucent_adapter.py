"""Use a Lucent ``param_f`` (``param_f() -> (params, image_f)``) with our render loop."""
from __future__ import annotations

from typing import Callable, List, Optional

import torch

from ..errors import ConfigError, describe
from ..spaces import ImageSpace, UnitSpace, convert
from .base import Parameterization

__all__ = ["LucentParam"]


class LucentParam(Parameterization):
    """Wrap a Lucent ``param_f`` such as ``lucent.optvis.param.image(128, fft=True)``.

    ``image_f()`` returns RGB on the 0-1 scale (N, 3, H, W) (:attr:`native_space` is
    ``UnitSpace(3)``); ``forward(space)`` converts it to the model's input space, which the render
    loop resolves per call: ``model.input_space`` when the model declares one, else torchvision's
    ImageNet normalisation, as Lucent's ``render_vis(preprocess=True)`` does (``render(...,
    preprocess=False)`` feeds the RGB image unchanged). ``model_space`` declares the space here
    instead. Lucent parameterizations declare no bounds and no decay space.
    """

    def __init__(self, param_f: Callable, model_space: Optional[ImageSpace] = None) -> None:
        super().__init__()
        if not callable(param_f):
            raise ConfigError(describe("param", "a Parameterization or a Lucent param_f callable", param_f))
        params, image_f = param_f()
        self._tensors: List[torch.Tensor] = list(params)
        if not self._tensors or not all(isinstance(t, torch.Tensor) for t in self._tensors):
            raise ConfigError(describe("param_f", "a function returning (list of tensors, image_f)", type(params).__name__))
        self.image_f = image_f
        self.model_space = model_space
        self.rgb_space = UnitSpace(3)

    @property
    def variable(self) -> torch.Tensor:  # type: ignore[override]
        if len(self._tensors) != 1:
            raise ConfigError(describe("param_f", "a single tensor for this optimizer", f"{len(self._tensors)} tensors",
                                       "Use a torch.optim optimizer (TorchOptimizer) for multi-tensor parameterizations."))
        return self._tensors[0]

    @property
    def batch_size(self) -> int:
        return int(self.image_f().shape[0])

    def tensors(self) -> List[torch.Tensor]:
        return list(self._tensors)

    @torch.no_grad()
    def decay_(self, d: float) -> None:
        if d:
            for t in self._tensors:
                t.mul_(1.0 - d)

    @property
    def native_space(self) -> ImageSpace:
        return self.rgb_space

    def forward(self, space: Optional[ImageSpace] = None) -> torch.Tensor:
        return convert(self.image_f(), self.rgb_space, self.target_space(space))
