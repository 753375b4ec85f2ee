"""L-BFGS-B optimizers: a bounded L-BFGS in torch (:class:`LBFGSB`) and SciPy's solver
(:class:`ScipyLBFGSB`, cnnpref's choice, in :mod:`.lbfgs_scipy`).

Both follow :mod:`lucent_dgn.render.problem`. One outer step is one L-BFGS iteration (one or more
evaluations); at most ``min(max_iter, problem.n_steps)`` run. Bounds: ``problem.param.bounds()``;
the start point is first projected into the box, as SciPy does.
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple

import torch

from ..errors import ConfigError, describe
from ._lbfgs_common import Box, _check, _limit, _num, box_bounds
from .lbfgs_scipy import ScipyLBFGSB
from .problem import Problem

__all__ = ["LBFGSB", "ScipyLBFGSB", "box_bounds"]

logger = logging.getLogger(__name__)


def _gather2(mat: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    m = order.shape[1]
    rows = mat.gather(1, order[:, :, None].expand(-1, -1, m))
    return rows.gather(2, order[:, None, :].expand(-1, m, -1))


def _pick(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows of ``a`` where ``mask`` (B,) else rows of ``b``; no copy when the mask is uniform."""
    if bool(mask.all()):
        return a
    return b if not bool(mask.any()) else torch.where(mask[:, None], a, b)


class _History:
    """Per-item L-BFGS memory: pairs in one (B, 2m, D) tensor (rows :m = s, m: = y) in ring slots,
    Gram blocks s_i.y_j and y_i.y_j (B, m, m) float64, insertion ages (B, m) (-1 = empty slot)."""

    def __init__(self, b: int, d: int, m: int, like: torch.Tensor) -> None:
        kw, kw64 = dict(device=like.device), dict(dtype=torch.float64, device=like.device)
        self.m, self.store = m, torch.zeros(b, 2 * m, d, dtype=like.dtype, **kw)
        self.sy, self.yy = torch.zeros(b, m, m, **kw64), torch.zeros(b, m, m, **kw64)
        self.gamma = torch.ones(b, **kw64)
        self.age, self.count = torch.full((b, m), -1, **kw), torch.zeros(b, dtype=torch.long, **kw)
        self.pending: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None

    def empty(self) -> torch.Tensor:
        return (self.age < 0).all(1)

    def reset(self, items: torch.Tensor) -> None:
        self.age = torch.where(items[:, None], -1, self.age)
        self.count, self.gamma = torch.where(items, 0, self.count), torch.where(items, 1.0, self.gamma)

    def push(self, s: torch.Tensor, y: torch.Tensor, eps: float) -> None:
        """Queue pair (s, y) (B, D), inserted by the next :meth:`hg`; kept only where
        s.y > eps |s| |y| (the cosine of s and y exceeds eps: invariant to the scales of loss and x)."""
        sy, yy, ss = (s * y).sum(1).double(), (y * y).sum(1).double(), (s * s).sum(1).double()
        self.pending = (s, y, (sy > eps * (ss * yy).sqrt()) & torch.isfinite(sy) & torch.isfinite(yy))

    def _insert(self, ar: torch.Tensor):
        """Write the pending pair into its ring slot (where kept); returns (slot, keep, (s, y))."""
        (s, y, keep), self.pending, m = self.pending, None, self.m
        slot = self.count % m
        for rows, vec in ((slot, s), (slot + m, y)):
            self.store[ar, rows] = _pick(keep, vec, self.store[ar, rows])
        return slot, keep, (s, y)

    def hg(self, gf: torch.Tensor) -> torch.Tensor:
        """H gf per item (B, D), compact form of Byrd, Nocedal & Schnabel (1994): two passes."""
        m, ar = self.m, torch.arange(gf.shape[0], device=gf.device)
        if self.pending is None:
            prods = torch.bmm(gf[:, None, :], self.store.mT).mT.double()  # (B, 2m, 1)
        else:
            slot, keep, (s, y) = self._insert(ar)
            prods = torch.bmm(torch.stack((s, y, gf), 1), self.store.mT).mT.double()  # (B, 2m, 3)
            mask = torch.nn.functional.one_hot(slot, m).bool() & keep[:, None]
            r, c = mask[:, :, None], mask[:, None, :]
            self.sy = torch.where(c, prods[:, :m, 1, None], torch.where(r, prods[:, None, m:, 0], self.sy))
            self.yy = torch.where(c, prods[:, m:, 1, None], torch.where(r, prods[:, None, m:, 1], self.yy))
            self.age, self.count = torch.where(mask, self.count[:, None], self.age), self.count + keep.long()
            self.gamma = torch.where(keep, prods[ar, slot, 1] / prods[ar, slot + m, 1], self.gamma)
        order = torch.argsort(self.age, dim=1)  # empty slots first, then oldest to newest
        v = self.age.gather(1, order) >= 0
        pair, sy_o, gam = v[:, :, None] & v[:, None, :], _gather2(self.sy, order), self.gamma[:, None]
        rmat = torch.where(pair, sy_o.triu(), 0.0) + torch.diag_embed((~v).double())
        a = torch.where(v, prods[:, :m, -1].gather(1, order), 0.0)
        b = torch.where(v, prods[:, m:, -1].gather(1, order), 0.0)
        u = torch.linalg.solve_triangular(rmat, a[:, :, None], upper=True)[:, :, 0]
        yy_u = (torch.where(pair, _gather2(self.yy, order), 0.0) @ u[:, :, None])[:, :, 0]
        w = torch.where(v, sy_o.diagonal(dim1=1, dim2=2), 0.0) * u + gam * (yy_u - b)
        p1 = torch.linalg.solve_triangular(rmat.mT, w[:, :, None], upper=False)[:, :, 0]
        coef = torch.zeros_like(prods[:, :, 0])
        coef = coef.scatter(1, torch.cat((order, order + m), 1), torch.cat((p1, -gam * u), 1))
        scaled = gf[:, None, :] * gam[:, :, None].to(gf.dtype)
        return torch.baddbmm(scaled, coef[:, None, :].to(gf.dtype), self.store)[:, 0]


class LBFGSB:
    """Bounded L-BFGS in torch (projected quasi-Newton) on the variable's device; no numpy.

    Per item and iteration: coordinates at a bound whose gradient points outwards are active;
    ``d = -H g`` on the free ones (0 on active ones), with H the L-BFGS inverse Hessian of the last
    ``history_size`` pairs (compact form: two batched products over the stacked history); then a
    line search on the projected path ``P(x + a d)``: Armijo along the path, weak Wolfe curvature
    on the still-moving coordinates, extrapolation (x4), safeguarded quadratic backtracking.
    Pairs with ``s.y <= curvature_eps |s| |y|`` are skipped. A failed line search resets the
    item's history; failing again finishes it. An item finishes when ``max|x - P(x - g)| <= gtol``
    or its decrease is ``<= ftol * max(|f|, |f+|, 1)`` (SciPy's tests); the run ends when all have.
    Without bounds this is plain L-BFGS.

    Loss scale: multiplying the loss by any ``w > 0`` leaves every iterate unchanged (up to
    rounding); only when the run stops can depend on it, through SciPy's stopping tests (``gtol`` is
    an absolute threshold on the gradient, and ``ftol``'s scale has a floor of 1). The
    history's ``H`` scales as ``1/w``, the line search's tests and interpolation are ratios, and
    the first step (below) depends on the direction of ``d`` only.

    First step (empty history: at the start and after a reset): the trial moves each free
    coordinate by ``first_step * scale`` on average, where ``scale`` is the item's mean finite box
    width, or its mean ``|x|`` (1 if 0) when no coordinate has a finite box. So the first trial is
    a fixed fraction of the variable's range whatever the gradient's size; later steps take the
    length L-BFGS's curvature estimate gives them. ``first_step=None`` restores SciPy's rule
    (``1`` for boxed items, ``1/|d|`` otherwise), whose boxed first trial ``P(x - g)`` depends on
    the loss scale.

    Batches: ``per_item=True`` (default) gives each item its own history, step and stopping state
    (from ``problem.last_item_losses``; item i's gradient depends on item i only), so each item
    follows its own path; a step costs the evaluations its slowest item needs. ``per_item=False``
    (or a problem whose ``last_item_losses`` is None) treats the (N, ...) variable as one vector.
    Loss and gradient carry over between steps (as in SciPy): with random transforms, step t's
    first trial is compared with step t-1's draw. Each step's record (history, callbacks) is the
    accepted point of each item, not the last trial (``problem.select_records``, when the problem
    has it).

    Args:
        max_iter: iteration limit (default 500; also capped by ``problem.n_steps``).
        history_size: pairs kept (10). ftol, gtol: stopping tolerances (SciPy's defaults).
        max_ls: evaluations per line search (20). c1, c2: Armijo / curvature constants (1e-4, 0.9).
        curvature_eps: pair-skipping threshold on the cosine of s and y (1e-10).
        first_step: mean move per free coordinate of the first trial, as a fraction of the item's
            scale (default 0.05); None = SciPy's rule.
        dtype: working dtype of x, gradients and history (None = the variable's; e.g. float64).
        per_item: per-item histories (True) or one joint vector (False).

    After ``run``: ``n_evals``, ``n_iter`` and ``finished`` ((B,) bool, items that converged).
    """

    def __init__(self, max_iter: Optional[int] = 500, history_size: int = 10,
                 ftol: float = 2.220446049250313e-09, gtol: float = 1e-5, max_ls: int = 20, c1: float = 1e-4,
                 c2: float = 0.9, curvature_eps: float = 1e-10, first_step: Optional[float] = 0.05,
                 dtype: Optional[torch.dtype] = None, per_item: bool = True) -> None:
        self.max_iter = None if max_iter is None else _num("max_iter", max_iter, True)
        self.m, self.max_ls = _num("history_size", history_size, True), _num("max_ls", max_ls, True)
        self.ftol, self.gtol = _num("ftol", ftol), _num("gtol", gtol)
        self.eps = _num("curvature_eps", curvature_eps)
        _check("c1, c2", (c1, c2), 0 < c1 < c2 < 1, "numbers with 0 < c1 < c2 < 1")
        _check("dtype", dtype, dtype is None or (isinstance(dtype, torch.dtype) and dtype.is_floating_point),
               "None or a floating torch.dtype")
        if first_step is not None:
            first_step = _num("first_step", first_step)
            _check("first_step", first_step, 0 < first_step < float("inf"), "None or a finite number > 0")
        self.c1, self.c2, self.dtype, self.per_item = float(c1), float(c2), dtype, bool(per_item)
        self.first_step = first_step
        self.n_evals, self.n_iter, self.finished, self._box, self._box_width = 0, 0, None, None, None
        self._k = 0  # evaluations in the current step (the index of the next one)

    def __repr__(self) -> str:
        return (f"LBFGSB(max_iter={self.max_iter}, history_size={self.m}, ftol={self.ftol:g}, gtol={self.gtol:g}, "
                f"first_step={self.first_step}, dtype={self.dtype}, per_item={self.per_item})")

    def _proj(self, x: torch.Tensor) -> torch.Tensor:
        return x if self._box is None else torch.clamp(x, self._box[0], self._box[1])

    def _evaluate(self, problem: Problem, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        var, n = problem.param.variable, x.shape[0]
        with torch.no_grad():
            var.copy_(x.reshape(var.shape))
        loss, self.n_evals, self._k = problem.evaluate(), self.n_evals + 1, self._k + 1
        grad, items = var.grad, (problem.last_item_losses if n > 1 else None)
        g = torch.zeros_like(x) if grad is None else grad.detach().reshape(x.shape).to(x.dtype, copy=True)
        f = (loss if items is None else items).detach().reshape(-1).to(x.device, torch.float64)
        if f.numel() != n and self.n_evals > 1:  # the first evaluation may switch to one joint vector
            raise ConfigError(describe("problem.last_item_losses", f"an ({n},) tensor at every evaluation",
                                       items, "Use LBFGSB(per_item=False)."))
        return f, g

    def _apg(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """|x - P(x - g)| (B, D); 0 on active coordinates. Float arithmetic: masks are slow on CPU."""
        return (g if self._box is None else torch.clamp(g, x - self._box[1], x - self._box[0])).abs()

    def _first_alpha(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """(B,) float64: the first trial step of items with an empty history (see the class docstring)."""
        if self.first_step is None:
            return torch.where(self._boxed, 1.0, 1.0 / d.norm(dim=1).double())
        moving = (d != 0).to(d.dtype)
        mean_d = ((d.abs().sum(1) / moving.sum(1).clamp_min(1.0))).double()
        return self.first_step * self._scale(x) / torch.where(mean_d > 0, mean_d, 1.0)

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) float64: mean finite box width per item, else mean |x| (1 where that is 0)."""
        width = self._box_width
        if width is not None and bool(torch.isfinite(width).all()):
            return width  # the common case: no pass over x
        mean_x = x.abs().double().mean(1)
        fallback = torch.where(mean_x > 0, mean_x, 1.0)
        return fallback if width is None else torch.where(torch.isfinite(width), width, fallback)

    @staticmethod
    def _mean_width(box: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B,) float64: mean finite box width per item; NaN where no coordinate has a finite width > 0."""
        width = (box[1] - box[0]).double()
        finite = torch.isfinite(width)
        n_finite = finite.sum(1)
        mean_w = torch.where(finite, width, 0.0).sum(1) / n_finite.clamp_min(1)
        return torch.where((n_finite > 0) & (mean_w > 0), mean_w, float("nan"))

    def _search(self, problem: Problem, x, f, g, d, empty, skip, k_start):
        """Line search along P(x + a d) per item; returns (x+, f+, g+, failed, k+), where k+ (B,) is the
        index within the step of the evaluation at x+ (``k_start``, the evaluation at x, if none)."""
        gd = (g * d).sum(1).double()
        skip = skip | ~(gd < 0)
        alpha = torch.where(empty, self._first_alpha(x, d), 1.0) if bool(empty.any()) else torch.ones_like(gd)
        lo, hi = torch.zeros_like(gd), torch.full_like(gd, float("inf"))
        a_acc, acc, f_acc, g_acc, f_lo, g_lo = lo, torch.zeros_like(skip), f, g, f, g
        k_acc, k_lo = k_start, k_start
        for _ in range(self.max_ls):
            live = ~(skip | acc)
            if not bool(live.any()):
                break
            step = torch.where(live, alpha, a_acc)
            xt = self._proj(torch.addcmul(x, step[:, None].to(x.dtype), d))
            ft, gt = self._evaluate(problem, xt)
            k = self._k - 1
            dd = gt * d
            if self._box is not None:  # only coordinates still moving along the path
                dd = dd * torch.sign(xt - self._box[0]) * torch.sign(self._box[1] - xt)
            armijo = ft <= f + self.c1 * (g * (xt - x)).sum(1).double()
            curv = dd.sum(1).double() >= self.c2 * gd  # also true once every coordinate is clipped
            new, grow, shrink = live & armijo & curv, live & armijo & ~curv, live & ~armijo
            a_acc, f_acc = torch.where(new, step, a_acc), torch.where(new, ft, f_acc)
            lo, f_lo = torch.where(grow, step, lo), torch.where(grow, ft, f_lo)
            k_acc, k_lo = torch.where(new, k, k_acc), torch.where(grow, k, k_lo)
            g_acc, g_lo = _pick(new, gt, g_acc), _pick(grow, gt, g_lo)
            acc, hi, den = acc | new, torch.where(shrink, step, hi), 2.0 * (ft - f - gd * step)
            quad = torch.nan_to_num(torch.where(den > 0, -gd * step * step / den, 0.5 * step), nan=0.0)
            quad = torch.where(lo > 0, 0.5 * (lo + hi), quad.clamp(0.1 * step, 0.5 * step))
            grown = torch.where(torch.isinf(hi), 4.0 * step, 0.5 * (lo + hi))
            alpha = torch.where(shrink, quad, torch.where(grow, grown, alpha))
        late = ~(skip | acc) & (lo > 0)  # out of evaluations after a sufficient decrease
        a_acc, f_acc = torch.where(late, lo, a_acc), torch.where(late, f_lo, f_acc)
        g_acc, k_acc = _pick(late, g_lo, g_acc), torch.where(late, k_lo, k_acc)
        acc = acc | late
        x_new = self._proj(torch.addcmul(x, a_acc[:, None].to(x.dtype), d))
        return x_new, torch.where(acc, f_acc, f), _pick(acc, g_acc, g), ~acc, torch.where(acc, k_acc, k_start)

    def _setup(self, var: torch.Tensor, box: Box, rows: int):
        self._box = None if box is None else tuple(b.reshape(rows, -1) for b in box)
        self._boxed = torch.zeros(rows, dtype=torch.bool, device=var.device) if box is None else (
            torch.isfinite(self._box[0]) & torch.isfinite(self._box[1])).all(1)
        self._box_width = None if self._box is None else self._mean_width(self._box)  # constant for the run
        x = self._proj(var.detach().to(self.dtype or var.dtype).reshape(rows, -1).clone())
        return x, _History(rows, x.shape[1], self.m, x)

    def run(self, problem: Problem) -> None:
        """Optimise ``problem.param.variable`` in place (see the class docstring)."""
        var = problem.param.variable
        box, f, g, self.n_evals, self.n_iter = box_bounds(problem, self.dtype or var.dtype), None, None, 0, 0
        x, hist = self._setup(var, box, var.shape[0] if self.per_item else 1)
        select = getattr(problem, "select_records", None)
        for t in range(_limit(self.max_iter, problem)):
            problem.begin_step(t)
            self._k, k_start = 0, -1  # -1: x was evaluated in an earlier step (its record is the last one kept)
            if f is None:
                f, g = self._evaluate(problem, x)
                k_start = 0
                if f.numel() != x.shape[0]:
                    logger.info("No per-item losses (objective not split by item): one joint L-BFGS history.")
                    (x, hist), g = self._setup(var, box, 1), g.reshape(1, -1)
                apg = self._apg(x, g)
                self.finished = apg.amax(1) <= self.gtol
            k_new = torch.full((x.shape[0],), k_start, dtype=torch.long, device=x.device)
            if not bool(self.finished.all()):
                free = torch.sign(apg).mul_((~self.finished[:, None]).to(x.dtype))  # 1 on free coordinates
                d = hist.hg(g * free).mul_(free).neg_()
                x_new, f_new, g_new, failed, k_new = self._search(problem, x, f, g, d, hist.empty(), self.finished,
                                                                  k_new)
                failed &= ~self.finished
                hist.push(x_new - x, g_new - g, self.eps)
                scale = torch.maximum(torch.maximum(f.abs(), f_new.abs()), torch.ones_like(f))
                small, apg = (f - f_new) <= self.ftol * scale, self._apg(x_new, g_new)
                stalled = failed & hist.empty()
                self.finished = self.finished | stalled | (~failed & small) | (apg.amax(1) <= self.gtol)
                hist.reset(failed)
                x, f, g = x_new, f_new, g_new
                with torch.no_grad():
                    var.copy_(x.reshape(var.shape))
            if select is not None and self._k > 0:
                select(k_new.tolist())
            self.n_iter += 1
            if problem.end_step(t) or bool(self.finished.all()):
                break
