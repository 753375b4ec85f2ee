"""Item 6: per-step pixel operations in torch (``lucent_dgn.render.image_ops``) vs cnnpref's numpy/SciPy.

References, per image as cnnpref and bdpy run them: Gaussian blur = ``scipy.ndimage.gaussian_filter``
on each channel (mode 'reflect'); clip_extreme = two ``np.percentile`` + ``np.clip``; clip_small_norm
and clip_small_contribution = a per-pixel channel norm, ``np.percentile`` and zeroing. Images are
3x227x227 float32 on the 0-255 scale. Batch 8 is timed for torch only and compared with its own
batch-1 cost (ideal 8x).
"""
from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np
import torch

from _report import Row, row
from _timing import interleave, ratio, time_calls

__all__ = ["run"]

SIGMAS = (0.5, 1.0, 2.5)


def _np_blur(x: np.ndarray, sigma: float) -> None:
    from scipy.ndimage import gaussian_filter
    for img in x:
        for c in range(img.shape[0]):
            img[c] = gaussian_filter(img[c], sigma, mode="reflect")


def _np_clip_extreme(x: np.ndarray, pct: float = 1.0) -> None:
    for img in x:
        lo, hi = np.percentile(img, pct / 2.0), np.percentile(img, 100.0 - pct / 2.0)
        np.clip(img, lo, hi, out=img)


def _np_zero_small(img: np.ndarray, norm: np.ndarray, pct: float) -> None:
    img[:, norm < np.percentile(norm, pct)] = 0.0


def _np_clip_small_norm(x: np.ndarray, pct: float = 5.0) -> None:
    for img in x:
        _np_zero_small(img, np.sqrt((img ** 2).sum(0)), pct)


def _np_clip_small_contribution(x: np.ndarray, g: np.ndarray, pct: float = 5.0) -> None:
    for img, grad in zip(x, g):
        _np_zero_small(img, np.sqrt(((img * grad) ** 2).sum(0)), pct)


def _ops(batch: int) -> Dict[str, Dict[str, Callable[[], None]]]:
    """op name -> {"torch": fn, "numpy": fn} on fresh random images of ``batch`` items."""
    from lucent_dgn.render import image_ops as io
    gen = torch.Generator().manual_seed(0)
    xt = torch.rand(batch, 3, 227, 227, generator=gen) * 255
    gt = torch.randn(batch, 3, 227, 227, generator=gen)
    xn, gn = xt.numpy().copy(), gt.numpy().copy()
    ops: Dict[str, Dict[str, Callable[[], None]]] = {}
    for s in SIGMAS:
        ops[f"blur sigma {s}"] = {"torch": lambda s=s: xt.copy_(io.gaussian_blur(xt, s)),
                                  "numpy": lambda s=s: _np_blur(xn, s)}
    ops["clip_extreme 1%"] = {"torch": lambda: io.clip_extreme_(xt, 1.0), "numpy": lambda: _np_clip_extreme(xn)}
    ops["clip_small_norm 5%"] = {"torch": lambda: io.clip_small_norm_(xt, 5.0),
                                 "numpy": lambda: _np_clip_small_norm(xn)}
    ops["clip_small_contribution 5%"] = {"torch": lambda: io.clip_small_contribution_(xt, gt, 5.0),
                                         "numpy": lambda: _np_clip_small_contribution(xn, gn)}
    return ops


def run(quick: bool, threads: int = 1, log=print) -> List[Row]:
    clock = "cpu" if threads == 1 else "wall"
    calls, rounds = (6, 5) if quick else (10, 9)
    b1, b8 = _ops(1), _ops(8)
    variants = {}
    for name in b1:
        variants[f"{name} | numpy b1"] = lambda f=b1[name]["numpy"]: time_calls(f, calls)
        variants[f"{name} | torch b1"] = lambda f=b1[name]["torch"]: time_calls(f, calls)
        variants[f"{name} | torch b8"] = lambda f=b8[name]["torch"]: time_calls(f, max(2, calls // 3))
    log("  pixel operations, torch vs numpy/SciPy")
    res = interleave(variants, rounds)
    kw = dict(clock=clock, threads=threads)
    rows = []
    for name in b1:
        t1, n1, t8 = (res[f"{name} | {k}"] for k in ("torch b1", "numpy b1", "torch b8"))
        detail = {"torch_b1": t1.as_dict(), "numpy_b1": n1.as_dict(), "torch_b8": t8.as_dict()}
        key = name.split()[0] + (name.split()[-1] if name.startswith("blur") else "")
        rows.append(row(6, f"6.{key}.b1", f"{name}, batch 1: torch / numpy", ratio(t1, n1, clock), "<= 1.10",
                        **kw, **detail))
        rows.append(row(6, f"6.{key}.b8", f"{name}: torch batch 8 / torch batch 1", ratio(t8, t1, clock), "<= 9",
                        **kw))
    return rows
