"""A fake render Problem for optimizer tests: a parameterization holding the variable (optional
box bounds) and a per-item loss function; it records step events and evaluations outside the box."""
from __future__ import annotations

from typing import Callable, List, Optional

import torch
from torch import nn

from lucent_dgn.parameterizations.base import Parameterization

LossFn = Callable[[torch.Tensor], torch.Tensor]  # variable (N, ...) -> per-item losses (N,)


class BoxParam(Parameterization):
    """Holds the variable; optional box bounds broadcastable to it."""

    def __init__(self, x0: torch.Tensor, lower=None, upper=None) -> None:
        super().__init__()
        self.variable = nn.Parameter(x0.clone())
        self._bounds = None if lower is None else (torch.as_tensor(lower, dtype=x0.dtype),
                                                   torch.as_tensor(upper, dtype=x0.dtype))

    def bounds(self):
        return self._bounds

    def forward(self) -> torch.Tensor:
        return self.variable


class FakeProblem:
    """The Problem protocol around a per-item loss; records steps and checks the box."""

    def __init__(self, param: BoxParam, loss_fn: LossFn, n_steps: int = 1000,
                 stop_at: Optional[int] = None, item_losses: bool = True) -> None:
        self.param, self.loss_fn, self.n_steps, self.stop_at = param, loss_fn, n_steps, stop_at
        self.item_losses = item_losses
        self.n_evals, self.jitter_offsets, self.last_item_losses = 0, None, None
        self.events: List[tuple] = []
        self.outside = 0  # evaluations at points outside the box

    def evaluate(self) -> torch.Tensor:
        var = self.param.variable
        b = self.param.bounds()
        if b is not None and bool(((var < b[0]) | (var > b[1])).any()):
            self.outside += 1
        with torch.enable_grad():
            items = self.loss_fn(var)
            (grad,) = torch.autograd.grad(items.sum(), var)
        var.grad = grad
        self.n_evals += 1
        self.events.append(("eval",))
        self.last_item_losses = items.detach() if self.item_losses else None
        return items.detach().sum().double()

    def begin_step(self, t: int) -> None:
        self.events.append(("begin", t))

    def end_step(self, t: int) -> bool:
        self.events.append(("end", t))
        return self.stop_at is not None and t + 1 >= self.stop_at

    def steps(self) -> List[int]:
        """The steps that ended, in order."""
        return [e[1] for e in self.events if e[0] == "end"]

    def check_pairing(self) -> None:
        """begin(t)/end(t) alternate with t = 0, 1, ...; evaluations only inside a step."""
        open_t, expected = None, 0
        for ev in self.events:
            if ev[0] == "begin":
                assert open_t is None and ev[1] == expected
                open_t = ev[1]
            elif ev[0] == "end":
                assert open_t == ev[1]
                open_t, expected = None, expected + 1
            else:
                assert open_t is not None
        assert open_t is None


def spd_quadratic(dim: int = 12, seed: int = 3):
    """0.5 x'Ax - b'x with a dense SPD A (condition 30); returns loss_fn and the optimum (1, dim)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(0, 1.5, dim, dtype=torch.float64)) @ q.T
    b = torch.randn(1, dim, generator=gen, dtype=torch.float64)
    return (lambda x: 0.5 * ((x @ a) * x).sum(1) - (b * x).sum(1)), torch.linalg.solve(a, b[0])[None]


class SearchProblem(FakeProblem):
    """FakeProblem with the forward-only candidate evaluation and record selection of the render loop;
    it keeps every candidate it scored (``seen``) to check the box."""

    def __init__(self, param: BoxParam, loss_fn: LossFn, n_steps: int = 1000, **kw) -> None:
        super().__init__(param, loss_fn, n_steps=n_steps, **kw)
        self.seen: List[torch.Tensor] = []
        self.selected: List[list] = []

    def evaluate_candidates(self, candidates: torch.Tensor, max_batch=None) -> torch.Tensor:
        self.seen.append(candidates.clone())
        with torch.no_grad():
            items = torch.stack([self.loss_fn(c) for c in candidates])
        self.n_evals += candidates.shape[0]
        self.events.append(("eval",))
        return items.double() if self.item_losses else items.sum(1, keepdim=True).double()

    def select_records(self, index) -> None:
        self.selected.append(list(index))
