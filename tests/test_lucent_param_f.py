"""Our parameterizations as Lucent ``param_f``s inside ``render_vis``: the generator is left as it
was, code/pixel bounds hold under any torch optimizer, images follow Lucent's RGB [0, 1] convention."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from lucent.optvis import objectives as lobj
from lucent.optvis import render as lrender
from torch import nn

import lucent_dgn as ld
from lucent_dgn.generators.small import fashion_generator
from lucent_dgn.models.fashion import fashion_classifier
from lucent_dgn.spaces import CaffeSpace, UnitSpace


def _to_grey(x: torch.Tensor) -> torch.Tensor:
    return x.mean(1, keepdim=True)


def _render_vis(model, objective, param_f, steps, **kwargs):
    """The README's render_vis call for the grey 28 px classifier."""
    options = dict(transforms=[_to_grey], preprocess=False, fixed_image_size=28, thresholds=(steps,),
                   show_image=False, progress=False)
    options.update(kwargs)
    with ld.preserve_pre_activations(model):
        return lrender.render_vis(model, objective, param_f, **options)


def _snapshot(module: nn.Module):
    return ({n: p.requires_grad for n, p in module.named_parameters()},
            {n: m.training for n, m in module.named_modules()},
            {k: v.clone() for k, v in module.state_dict().items()},
            sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules()))


def _assert_same_state(module: nn.Module, before) -> None:
    flags, modes, state, hooks = before
    after_flags, after_modes, after_state, after_hooks = _snapshot(module)
    assert after_flags == flags
    assert after_modes == modes
    assert after_hooks == hooks
    for key, value in state.items():
        assert torch.equal(after_state[key], value), key
    assert all(p.grad is None for p in module.parameters())


class _CodeLog:
    """Forward pre-hook recording every code the generator is called with."""

    def __init__(self, generator: nn.Module) -> None:
        self.codes = []
        self.handle = generator.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.codes.append(args[0].detach().clone())

    def remove(self) -> None:
        self.handle.remove()


def test_shipped_generator_in_render_vis_is_untouched_bounded_and_exports_0_1(tmp_path):
    model, G = fashion_classifier(), fashion_generator()
    G.train()
    G.fc2.eval()                          # a mixed train/eval state, to be kept as it is
    G.conv1.weight.requires_grad_(False)  # mixed requires_grad flags, likewise
    before = _snapshot(G)
    lower, upper = G.code_bounds(k=1.0)
    param = ld.DGNImage(G, init="stats", lower=lower, upper=upper, seed=0)
    start = param.variable.detach().clone()
    assert ((start < lower) | (start > upper)).any()  # the initial code starts outside the box
    obj = ld.masked_units("fc2", ld.unit_mask((10,), 3))
    with torch.no_grad():
        logit_before = model(param())[0, 3].item()
    log = _CodeLog(G)
    path = tmp_path / "export.png"
    try:
        images = _render_vis(model, obj, param.lucent_param_f(), 50, thresholds=(1, 25, 50), save_image=True,
                             image_name=str(path))
    finally:
        log.remove()
    _assert_same_state(G, before)
    assert len(log.codes) >= 50
    for code in log.codes + [param.variable.detach()]:  # every code the generator saw, and the last one
        assert bool((code >= lower).all()) and bool((code <= upper).all())
    assert [im.shape for im in images] == [(1, 28, 28, 3)] * 3
    for im in images:
        assert im.min() >= 0.0 and im.max() <= 1.0
    png = np.asarray(Image.open(path))
    np.testing.assert_array_equal(png, (images[-1][0] * 255).astype(np.uint8))
    with torch.no_grad():
        assert model(param())[0, 3].item() > logit_before + 1.0


class _LoudGen(nn.Module):
    """Code (8,) -> (3, 12, 12) Caffe-space image whose RGB values leave [0, 1] by far."""

    code_shape = (8,)
    output_space = CaffeSpace()

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 3 * 12 * 12)

    def forward(self, z):
        return 300 * self.fc(z).view(-1, 3, 12, 12)


def _tiny_rgb_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 10 * 10, 6)).eval()


def test_exported_png_is_the_clipped_image_not_a_wrapped_one(tmp_path):
    param = ld.DGNImage(_LoudGen(), init="normal", seed=0, lower=None, upper=None)
    raw = param.image_for_display()
    assert raw.min() < -0.5 and raw.max() > 1.5  # far outside: Lucent's uint8 export would wrap
    path = tmp_path / "x.png"
    obj = ld.masked_units("3", ld.unit_mask((6,), 2))
    images = lrender.render_vis(_tiny_rgb_model(), obj, param.lucent_param_f(), transforms=[], preprocess=False,
                                thresholds=(3,), show_image=False, progress=False, fixed_image_size=12,
                                save_image=True, image_name=str(path))
    final = images[-1][0]
    assert final.min() == 0.0 and final.max() == 1.0
    np.testing.assert_array_equal(final, np.clip(param.image_for_display()[0].numpy(), 0, 1))
    png = np.asarray(Image.open(path)).astype(int)
    assert np.abs(png - final * 255).max() < 1.0


def test_clip_is_straight_through():
    """image_f() is clipped to [0, 1] but passes the gradient of every pixel, clipped or not."""
    param = ld.DGNImage(_LoudGen(), init="normal", seed=0, lower=None, upper=None)
    params, image_f = param.lucent_param_f()()
    weights = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    x = image_f()
    assert x.shape == (1, 3, 12, 12) and x.min() == 0.0 and x.max() == 1.0
    (x * weights).sum().backward()
    got = params[0].grad.clone()
    code = param.variable.detach().clone().requires_grad_(True)
    rgb = CaffeSpace().to_rgb01(_LoudGen()(code))
    (rgb * weights).sum().backward()
    torch.testing.assert_close(got, code.grad)


class _TrainModeGen(nn.Module):
    """A generator with BatchNorm and Dropout: train mode changes its output and its buffers."""

    code_shape = (8,)
    output_space = UnitSpace(3)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 3 * 12 * 12)
        self.bn = nn.BatchNorm1d(3 * 12 * 12)
        self.drop = nn.Dropout(0.5)

    def forward(self, z):
        return torch.sigmoid(self.drop(self.bn(self.fc(z)))).view(-1, 3, 12, 12)


def test_generator_in_train_mode_runs_with_eval_semantics_and_keeps_its_buffers():
    G = _TrainModeGen().train()
    with torch.no_grad():
        G.bn.running_mean.normal_()
        G.bn.running_var.uniform_(0.5, 2.0)
    before = _snapshot(G)
    param = ld.DGNImage(G, batch=2, init="normal", seed=0, lower=-2.0, upper=2.0)
    params, image_f = param.lucent_param_f()()
    x = image_f()
    _assert_same_state(G, before)
    assert G.training
    reference = copy.deepcopy(G).eval()
    with torch.no_grad():
        expected = reference(param.variable.detach())
    torch.testing.assert_close(x.detach(), expected)
    x.sum().backward()
    assert params[0].grad is not None and params[0].grad.abs().sum() > 0
    _assert_same_state(G, before)


@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.SGD(p, lr=1e4),
    lambda p: torch.optim.Adam(p, lr=5.0),
    lambda p: torch.optim.LBFGS(p, max_iter=4),
    lambda p: torch.optim.Adam(p, lr=5.0, fused=True),  # fused steps do not bump the version counter
], ids=["sgd", "adam", "lbfgs", "fused-adam"])
def test_code_bounds_hold_under_any_torch_optimizer(make_optimizer):
    G = _LoudGen()
    param = ld.DGNImage(G, init="normal", seed=0, lower=-0.5, upper=np.linspace(0.1, 1.0, 8))
    lower, upper = param.lower, param.upper
    obj = ld.masked_units("3", ld.unit_mask((6,), 2))
    # an objective that reads "input" calls image_f() a second time inside Lucent's closure
    obj = obj + lobj.Objective(lambda T: 1e-3 * T("input").square().mean())
    log = _CodeLog(G)
    try:
        lrender.render_vis(_tiny_rgb_model(), obj, param.lucent_param_f(), optimizer=make_optimizer, transforms=[],
                           preprocess=False, thresholds=(5,), show_image=False, progress=False, fixed_image_size=12)
    finally:
        log.remove()
    assert len(log.codes) >= 6
    for code in log.codes + [param.variable.detach()]:
        assert bool((code >= lower).all()) and bool((code <= upper).all())
    assert all(p.grad is None for p in G.parameters())


def test_pixel_image_keeps_its_bounds_and_range_under_render_vis():
    """The base class gives every parameterization the same contract (here: raw pixels in [0, 255])."""
    param = ld.PixelImage(12, space="unit", init="gray")
    images = lrender.render_vis(_tiny_rgb_model(), ld.masked_units("3", ld.unit_mask((6,), 2)), param.lucent_param_f(),
                                optimizer=lambda p: torch.optim.SGD(p, lr=1e3), transforms=[], preprocess=False,
                                thresholds=(3,), show_image=False, progress=False, fixed_image_size=12)
    v = param.variable.detach()
    assert v.min() >= 0.0 and v.max() <= 1.0
    assert ((v == 0) | (v == 1)).float().mean() > 0.5  # the huge steps did hit the bounds
    assert images[-1].min() >= 0.0 and images[-1].max() <= 1.0
