"""Random transforms applied to the model input by the render loop, drawn once per outer step.

Protocol: a transform is a callable ``x -> x'`` on an image batch (N, C, H, W). A transform with
random parameters also has ``resample(generator)``, which draws new parameters; between two
``resample`` calls every ``__call__`` applies the **same** parameters. The render loop calls
``resample`` once at the start of each outer step (``Problem.begin_step``), so all closure
evaluations within a step (e.g. L-BFGS line-search evaluations) see the same transform and the
closure stays deterministic.

Because the transform acts on the model input inside the autograd graph, the gradient with
respect to the parameterization's variable is already in the un-shifted frame.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch

from ..errors import ConfigError, describe

__all__ = ["Jitter", "Compose"]

Transform = Callable[[torch.Tensor], torch.Tensor]


class Jitter:
    """Random circular shift of the image, as cnnpref's ``image_jitter``.

    Each :meth:`resample` draws two integers, ``ox`` then ``oy``, each uniform in
    ``[-max_shift, max_shift]`` (inclusive); ``ox`` shifts the width (last) axis, ``oy`` the
    height axis. :meth:`__call__` applies ``torch.roll(x, shifts=(oy, ox), dims=(-2, -1))``
    (positive = content moves down / right, with wrap-around).

    Args:
        max_shift: J >= 0 in pixels (cnnpref default 32; its lower-layer example uses 4).
            ``0`` never shifts.

    Example:
        >>> jitter = Jitter(4)
        >>> jitter.resample(torch.Generator().manual_seed(0))
        >>> shifted = jitter(torch.zeros(1, 3, 8, 8))
    """

    def __init__(self, max_shift: int) -> None:
        if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
            raise ConfigError(describe("max_shift", "a non-negative integer (pixels)", max_shift))
        self.max_shift = max_shift
        self._oy = 0
        self._ox = 0

    @property
    def offsets(self) -> Tuple[int, int]:
        """The current ``(oy, ox)`` shift; ``(0, 0)`` before the first :meth:`resample`."""
        return self._oy, self._ox

    def resample(self, generator: Optional[torch.Generator] = None) -> None:
        """Draw this step's offsets (``ox`` first, then ``oy``) from ``generator``.

        The render loop calls this once per outer step, before the step's first evaluation.

        Args:
            generator: torch random generator (its device is used); None -> torch's global RNG.
        """
        if self.max_shift == 0:
            self._oy = self._ox = 0
            return
        device = generator.device if generator is not None else "cpu"
        draw = torch.randint(-self.max_shift, self.max_shift + 1, (2,), generator=generator, device=device)
        self._ox, self._oy = (int(v) for v in draw.tolist())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (..., H, W) rolled by the current offsets (differentiable; ``x`` itself at (0, 0))."""
        if self._oy == 0 and self._ox == 0:
            return x
        return torch.roll(x, shifts=(self._oy, self._ox), dims=(-2, -1))

    def __repr__(self) -> str:
        return f"Jitter({self.max_shift})"


class Compose:
    """Apply transforms in order; :meth:`resample` resamples every member that has ``resample``.

    Args:
        transforms: transforms following the protocol above, or plain callables ``x -> x'``
            (applied as they are; plain callables that draw their own random numbers make the
            step's closure non-deterministic).
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        items = list(transforms)
        for i, t in enumerate(items):
            if not callable(t):
                raise ConfigError(describe(f"transforms[{i}]", "callable (x -> x')", t))
        self.transforms: List[Transform] = items

    def resample(self, generator: Optional[torch.Generator] = None) -> None:
        """Draw new parameters for every member with a ``resample`` method, in list order."""
        for t in self.transforms:
            resample = getattr(t, "resample", None)
            if callable(resample):
                resample(generator)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    @property
    def jitter_offsets(self) -> Optional[Tuple[int, int]]:
        """Total ``(oy, ox)`` of the :class:`Jitter` members, nested Compose members included
        (None when there is none).

        This is the net shift of the image only when the other members commute with a
        circular shift (as plain jitters do).
        """
        parts = [t.offsets if isinstance(t, Jitter) else t.jitter_offsets
                 for t in self.transforms if isinstance(t, (Jitter, Compose))]
        parts = [p for p in parts if p is not None]
        if not parts:
            return None
        return sum(p[0] for p in parts), sum(p[1] for p in parts)

    @property
    def offsets(self) -> Tuple[int, int]:
        """Like :attr:`jitter_offsets`, but ``(0, 0)`` when there is no :class:`Jitter` member."""
        return self.jitter_offsets or (0, 0)

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"
