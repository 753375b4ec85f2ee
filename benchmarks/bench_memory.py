"""Item 7: peak memory of 20 DGN steps (ours vs the bare pipeline) and leaks over 50 renders.

Every measurement runs in a fresh subprocess (``python bench_memory.py --child ...``, one torch
thread). A child builds BVLC AlexNet and the DeePSiM fc6 generator (random weights), reads its
resident set (``VmRSS``), resets the kernel's peak counter (``/proc/self/clear_refs``, value 5),
runs the pipeline and reads the peak (``VmHWM``). Working set = peak - RSS after the models.
Where the peak cannot be reset, ``ru_maxrss`` is used (then the model build counts too).
The leak check renders 50 times on one model and reads the hook count of every module and the
RSS after renders 10 and 50.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _report import Row, row  # noqa: E402

__all__ = ["run"]


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _trim() -> None:
    """Give freed heap memory back to the OS, so the baseline RSS holds no cached free blocks
    (otherwise a pipeline that reuses them looks smaller than one that does not)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def _child_dgn(kind: str, batch: int, steps: int) -> Dict[str, float]:
    import torch
    import lucent_dgn as ld
    from _pipelines import bare_dgn, bvlc_alexnet, centre_mask, generator
    torch.set_num_threads(1)
    net, gen = bvlc_alexnet(), generator()
    if kind == "bare":  # build the bare step (frozen copies) before the baseline, like render's set-up
        run = bare_dgn(gen, net, centre_mask((1000,)), batch, steps=steps)
        del net, gen
    import gc
    gc.collect()
    _trim()
    base = _status_mb("VmRSS")
    reset = _reset_peak()
    if kind == "bare":
        run()
    else:
        objective = ld.masked_units("fc8", ld.unit_mask((1000,), 0))
        ld.render(net, objective, ld.DGNImage(gen, batch=batch, input_size=227, seed=0),
                  ld.MomentumGD(decay=0.01), steps, progress=False)
    peak = _status_mb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"after_models_mb": base, "peak_mb": peak, "working_set_mb": peak - base, "peak_reset": reset}


def _child_repeat(n: int) -> Dict[str, float]:
    import torch
    import lucent_dgn as ld
    from _pipelines import bvlc_alexnet
    torch.set_num_threads(1)
    net = bvlc_alexnet()
    objective = ld.masked_units("conv1", ld.unit_mask((96, 55, 55), 0))
    before = _hooks(net)
    rss = {}
    for i in range(1, n + 1):
        ld.render(net, objective, ld.PixelImage(227, seed=0), ld.MomentumGD(), 2, progress=False)
        if i in (10, n):
            rss[i] = _status_mb("VmRSS")
    return {"hooks_before": before, "hooks_after": _hooks(net), "rss_10_mb": rss[10], "rss_last_mb": rss[n],
            "renders": n}


def _spawn(args: List[str]) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _collect(proc: subprocess.Popen) -> Dict[str, float]:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed ({proc.returncode}): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def run(quick: bool, threads: int = 1, log=print) -> List[Row]:
    rows = []
    for batch in (1, 8):
        steps = 6 if (quick and batch == 8) else 20  # the peak is reached in the first step
        log(f"  peak RSS, DGN batch {batch} (two subprocesses side by side)")
        procs = {kind: _spawn(["dgn", kind, str(batch), str(steps)]) for kind in ("ours", "bare")}
        res = {kind: _collect(p) for kind, p in procs.items()}
        value = res["ours"]["working_set_mb"] / res["bare"]["working_set_mb"]
        rows.append(row(7, f"7.rss.dgn.b{batch}", f"peak working set, {steps} DGN steps, batch {batch}: ours / bare",
                        value, "<= 1.15", clock="rss", steps=steps, ours=res["ours"], bare=res["bare"]))
    log("  hooks and RSS over 50 renders")
    rep = _collect(_spawn(["repeat", "50"]))
    rows.append(row(7, "7.hooks", "hooks left on the model after 50 renders (difference)",
                    rep["hooks_after"] - rep["hooks_before"], "<= 0", clock="-", **rep))
    rows.append(row(7, "7.rss.repeat", "RSS growth from render 10 to render 50 (MB)",
                    rep["rss_last_mb"] - rep["rss_10_mb"], "<= 10", clock="rss", **rep))
    return rows


def _main(argv: List[str]) -> None:
    if argv[0] == "dgn":
        out = _child_dgn(argv[1], int(argv[2]), int(argv[3]))
    else:
        out = _child_repeat(int(argv[1]))
    print(json.dumps(out))


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "--child":
    _main(sys.argv[2:])
