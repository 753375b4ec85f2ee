"""Item 4: lucent_dgn's render against bdpy's ``bdpy.recon.torch.icnn.reconstruct`` (batch 1).

bdpy gets its own Caffe-style ``AlexNet`` and ``AlexNetGenerator`` (random weights, as users pass
them: eval mode, weights trainable), lucent_dgn gets ``BVLCAlexNet`` and the DeePSiM fc6 generator
loaded with the very same weights. Objective: cnnpref's inner product with a one-hot unit mask
(bdpy: ``loss_func = -(act * feat).sum()`` with ``feat`` the mask; ours: ``masked_units``), fc8
unit 0 or the centre unit of conv1 channel 0. Pixel path: SGD/momentum with bdpy's schedules (lr
2 -> 1e-10, momentum 0.9, decay 0.2 -> 1e-10), gradient normalisation, jitter 32 and blur sigma
2 -> 0.5 every step (cnnpref ``generate_image``'s defaults) on both sides. Generator path: decay
0.01, codes bounded to [0, 100], no image operations. bdpy's per-iteration times come from its
``custom_layer_loss_func`` callback (called once per iteration after the forward pass). Each
comparison runs ``reconstruct`` and ``render`` in lockstep (:class:`_timing.Lockstep`).
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import io
import tempfile
import warnings
from typing import Callable, Dict, List, Tuple

import numpy as np

import lucent_dgn as ld
from _pipelines import centre_mask, seeded
from _report import Row, row, skipped
from _timing import Lockstep, StepClock, details, interleave, ratio

__all__ = ["run", "available"]

SHAPES = {"fc8": (1000,), "conv1": (96, 55, 55)}
BOUNDS = (0.0, 100.0)


def available() -> str:
    """'' when bdpy imports, else the reason."""
    try:
        importlib.import_module("bdpy.recon.torch.icnn")
        models = importlib.import_module("bdpy.dl.torch.models")
        models.AlexNet, models.AlexNetGenerator  # noqa: B018 - both must exist
    except Exception as err:  # noqa: BLE001 - any import failure means: skip
        return f"bdpy not importable ({type(err).__name__}: {err}); install with `pip install bdpy`"
    return ""


def _preproc(img: np.ndarray) -> np.ndarray:
    from lucent_dgn.spaces import img_preprocess
    return img_preprocess(img)


def bdpy_loop(encoder, generator, layer: str, steps: int, outdir: str, on_step: Callable[[], None]
              ) -> Callable[[], None]:
    """One ``icnn.reconstruct`` call; ``on_step`` runs once per iteration (its loss callback)."""
    from bdpy.dl.torch.models import layer_map
    from bdpy.recon.torch.icnn import reconstruct

    mask = centre_mask(SHAPES[layer]).numpy()
    rng = np.random.RandomState(0)
    init_image = rng.randint(0, 256, (227, 227, 3)).astype(np.float32)
    init_code = np.maximum(rng.normal(0, 1, (4096,)), 0).astype(np.float32) * 10

    def tick(x=None, y=None, layer=None):
        on_step()
        return 0.0

    common = dict(layer_mapping=layer_map("alexnet"), n_iter=steps, loss_func=lambda a, f: -(a * f).sum(),
                  custom_layer_loss_func=tick, image_size=(227, 227, 3), save_snapshot=False,
                  disp_interval=10 ** 9, output_dir=outdir, device="cpu")
    if generator is None:
        extra = dict(lr=(2.0, 1e-10), momentum=(0.9, 0.9), decay=(0.2, 1e-10), initial_image=init_image,
                     preproc=_preproc, jittering=True, jitter_size=32, blurring=True, sigma=(2.0, 0.5))
    else:
        extra = dict(generator=generator, decay=(0.01, 0.01), initial_feature=init_code,
                     feature_lower_bound=BOUNDS[0], feature_upper_bound=BOUNDS[1], crop_generator_output=True)

    def loop() -> None:
        reconstruct({layer: mask}, encoder, **common, **extra)
    return loop


def ours_loop(net, gen, layer: str, steps: int, on_step: Callable[[], None]) -> Callable[[], None]:
    """One ``lucent_dgn.render`` with the same settings; ``on_step`` is its callback."""
    objective = ld.masked_units(layer, ld.unit_mask(SHAPES[layer], 0))

    def loop() -> None:
        if gen is None:
            param = ld.PixelImage(227, seed=0)
            opt = ld.MomentumGD(lr=(2.0, 1e-10), momentum=(0.9, 0.9), decay=(0.2, 1e-10), blur_sigma=(2.0, 0.5))
            transforms = [ld.Jitter(32)]
        else:
            param = ld.DGNImage(gen, input_size=227, seed=0, lower=BOUNDS[0], upper=BOUNDS[1])
            opt, transforms = ld.MomentumGD(lr=(2.0, 1e-10), momentum=(0.9, 0.9), decay=0.01), None
        ld.render(net, objective, param, opt, steps, transforms=transforms, progress=False,
                  callbacks=[lambda info: on_step()], seed=0)
    return loop


def pair(net, gen, bd_net, bd_gen, layer: str, steps: int, outdir: str, names: Tuple[str, str]
         ) -> Callable[[], Dict[str, StepClock]]:
    """``run()`` of ours and bdpy in lockstep (:class:`_timing.Lockstep`)."""
    calls = [0]

    def run() -> Dict[str, StepClock]:
        calls[0] += 1
        lock = Lockstep(*(names if calls[0] % 2 else names[::-1]), numpy_seed=calls[0])
        loops = {names[0]: ours_loop(net, gen, layer, steps, lock.hook(names[0])),
                 names[1]: bdpy_loop(bd_net, bd_gen, layer, steps, outdir, lock.hook(names[1]))}
        with contextlib.redirect_stdout(io.StringIO()):
            return lock.run(loops)
    return run


def _models():
    from bdpy.dl.torch.models import AlexNet, AlexNetGenerator
    from lucent_dgn.generators.deepsim import deepsim_generator, load_generator_weights
    from lucent_dgn.models.alexnet import BVLCAlexNet, load_alexnet_weights
    bd_net, bd_gen = seeded(AlexNet), seeded(AlexNetGenerator, seed=1)
    net = load_alexnet_weights(BVLCAlexNet(), bd_net.state_dict()).eval()
    gen = load_generator_weights(deepsim_generator("fc6"), bd_gen.state_dict()).eval()
    return bd_net, bd_gen, net, gen


def run(quick: bool, threads: int = 1, log=print) -> List[Row]:
    """Rows of item 4 (or one skipped row when bdpy is missing). Each comparison runs the two
    loops in lockstep (one iteration each in turn)."""
    reason = available()
    if reason:
        return [skipped(4, "4.bdpy", "vs bdpy icnn.reconstruct (all rows)", reason)]
    warnings.filterwarnings("ignore")
    clock = "cpu" if threads == 1 else "wall"
    bd_net, bd_gen, net, gen = _models()
    bd_net_frozen = copy.deepcopy(bd_net).requires_grad_(False)
    bd_gen_frozen = copy.deepcopy(bd_gen).requires_grad_(False)
    steps = 5
    specs = [  # key, what, our generator, layer, bdpy encoder, bdpy generator, target
        ("4.pixel.fc8", "vs bdpy, pixel fc8, jitter+blur (encoder as users pass it)", None, "fc8", bd_net, None,
         "<= 0.40"),
        ("4.generator.fc8", "vs bdpy, generator fc8", gen, "fc8", bd_net, bd_gen, "<= 0.42"),
        ("4.pixel.conv1", "vs bdpy, pixel conv1, jitter+blur", None, "conv1", bd_net, None, "<= 0.30"),
        ("4.frozen.pixel.fc8", "vs bdpy frozen by the user, pixel fc8", None, "fc8", bd_net_frozen, None, "<= 1.00"),
        ("4.frozen.generator.fc8", "vs bdpy frozen by the user, generator fc8", gen, "fc8", bd_net_frozen,
         bd_gen_frozen, "<= 1.00"),
    ]
    with tempfile.TemporaryDirectory() as outdir:
        variants = {key: pair(net, g, e, bg, layer, steps, outdir, (f"{key} ours", f"{key} bdpy"))
                    for key, _, g, layer, e, bg, _ in specs}
        log("  icnn.reconstruct vs render, batch 1 (lockstep pairs)")
        res = interleave(variants, 5 if quick else 8)
    kw = dict(clock=clock, threads=threads)
    return [row(4, key, what, ratio(res[f"{key} ours"], res[f"{key} bdpy"], clock), target,
                **kw, **details(res, f"{key} ours", f"{key} bdpy"))
            for key, what, *_, target in specs]
