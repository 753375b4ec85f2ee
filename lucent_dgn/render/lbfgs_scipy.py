"""SciPy's L-BFGS-B (cnnpref's solver) as an optimizer of the render loop; the reference for
:class:`lucent_dgn.render.lbfgs.LBFGSB`.

It follows :mod:`lucent_dgn.render.problem`: one outer step is one L-BFGS iteration (one or more
evaluations); at most ``min(maxiter, problem.n_steps)`` run. The variable travels to SciPy as a
float64 numpy vector and back at every evaluation (this costs ~100 ms per evaluation at
3x227x227; use ``LBFGSB`` for speed).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ._lbfgs_common import _limit, _num, box_bounds
from .problem import Problem

__all__ = ["ScipyLBFGSB"]


class _Halt(Exception):
    """Raised inside SciPy's callback when ``end_step`` asks to stop."""


def _write(var: torch.Tensor, x: np.ndarray) -> None:
    with torch.no_grad():
        var.copy_(torch.from_numpy(np.asarray(x, dtype=np.float64)).reshape(var.shape))


class ScipyLBFGSB:
    """``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` on the flattened float64 variable.

    cnnpref's solver and options (spec §4.2, §6.2), with the scalar SUM over items as the loss
    (cnnpref's vector loss is a bug, Q6); the whole batch is one vector. Each objective call is one
    ``problem.evaluate()`` at the iterate cast to the variable's dtype; ``begin_step(t)`` precedes
    the first evaluation of iteration t and SciPy's per-iteration callback calls ``end_step(t)``.
    Numpy round trips make it slow at image size (perf_anchors §5); prefer :class:`LBFGSB`.

    Args:
        maxiter: iteration limit (default 500; also capped by ``problem.n_steps``).
        m: history size ``maxcor`` (10). ftol, gtol, maxfun, maxls: SciPy's options (SciPy's
            defaults). disp: print one line per iteration and a summary.

    After ``run``: ``n_evals``, ``n_iter``, ``result`` (SciPy's OptimizeResult; None when
    ``end_step`` stopped the run) and ``message``.
    """

    def __init__(self, maxiter: Optional[int] = 500, m: int = 10, ftol: float = 2.220446049250313e-09,
                 gtol: float = 1e-5, maxfun: int = 15000, maxls: int = 20, disp: bool = False) -> None:
        self.maxiter = None if maxiter is None else _num("maxiter", maxiter, True)
        self.m, self.maxfun = _num("m", m, True), _num("maxfun", maxfun, True)
        self.maxls = _num("maxls", maxls, True)
        self.ftol, self.gtol, self.disp = _num("ftol", ftol), _num("gtol", gtol), bool(disp)
        self.n_evals, self.n_iter, self.result, self.message = 0, 0, None, ""

    def __repr__(self) -> str:
        return f"ScipyLBFGSB(maxiter={self.maxiter}, m={self.m}, ftol={self.ftol:g}, gtol={self.gtol:g})"

    def run(self, problem: Problem) -> None:
        """Optimise ``problem.param.variable`` in place (see the class docstring)."""
        from scipy.optimize import Bounds, minimize

        var, box = problem.param.variable, box_bounds(problem, torch.float64)
        x0, bounds = var.detach().to("cpu", torch.float64).numpy().ravel().copy(), None
        if box is not None:
            lower, upper = (b.cpu().numpy().ravel() for b in box)
            x0, bounds = np.clip(x0, lower, upper), Bounds(lower, upper)
        self.n_evals, self.n_iter, self.result = 0, 0, None
        state = {"open": False, "x": x0, "f": float("nan")}

        def fun(x: np.ndarray):
            if not state["open"]:
                problem.begin_step(self.n_iter)
                state["open"] = True
            _write(var, x)
            state["last"] = np.array(x, dtype=np.float64)  # SciPy may reuse its array
            state["f"], self.n_evals = float(problem.evaluate()), self.n_evals + 1
            grad = var.grad
            if grad is None:
                return state["f"], np.zeros(x.size)
            return state["f"], grad.detach().to("cpu", torch.float64, copy=True).numpy().ravel()

        def callback(xk: np.ndarray) -> None:
            _write(var, xk)
            state.update(open=False, x=np.array(xk, dtype=np.float64))
            t, self.n_iter = self.n_iter, self.n_iter + 1
            if self.disp:
                print(f"L-BFGS-B iteration {t + 1}: loss {state['f']:.6g}, evaluations {self.n_evals}")
            if problem.end_step(t):
                raise _Halt

        options = dict(maxiter=_limit(self.maxiter, problem), maxcor=self.m, ftol=self.ftol, gtol=self.gtol,
                       maxfun=self.maxfun, maxls=self.maxls)
        try:
            self.result = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds, callback=callback,
                                   options=options)
            x, self.message = self.result.x, str(self.result.message)
        except _Halt:
            x, self.message = state["x"], "stopped by end_step"
        _write(var, x)
        if state["open"]:  # evaluations after the last completed iteration (e.g. a failed line search)
            select = getattr(problem, "select_records", None)
            if select is not None and not np.array_equal(state.get("last"), x):
                select([0 if self.n_iter == 0 else -1])  # the record of x: the start, or the last iteration's
            self.n_iter += 1
            problem.end_step(self.n_iter - 1)
        if self.disp:
            print(f"L-BFGS-B: {self.message}; {self.n_iter} iterations, {self.n_evals} evaluations")
