"""Generator training on synthetic data: seeding, checkpoints, resume, atomic writes, statistics."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lucent_dgn.datasets import TensorImages
from lucent_dgn.errors import ConfigError, CorruptWeightsError, LayerNotFoundError
from lucent_dgn.generators.small import CodeDiscriminator, SmallGenerator, load_generator
from lucent_dgn._io import save_torch
from lucent_dgn.spaces import UnitSpace
from lucent_dgn.training import CHECKPOINT_NAME, code_statistics, save_generator, train_generator

torch.set_num_threads(1)


class Tiny(nn.Module):
    """conv(1->3, 3x3) - relu - pool(2) - flatten - fc(3*4*4 -> 5) - relu - fc(5 -> 2), 8x8 input."""

    def __init__(self) -> None:
        super().__init__()
        self.input_space = UnitSpace(1)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(48, 5)
        self.fc_relu = nn.ReLU()
        self.out = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fc_relu(self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))))


def _setup(n: int = 32, size: int = 8, channels: int = 1):
    torch.manual_seed(123)
    model = Tiny().eval()
    data = TensorImages(torch.rand(n, channels, size, size), torch.zeros(n, dtype=torch.long))
    return model, data


KW = dict(batch_size=8, seed=3, comparator_layers=["pool", "fc"], generator_kwargs={"width": 8, "hidden": 16},
          progress=False)


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_continues_at_the_right_step_and_matches_uninterrupted(tmp_path: Path) -> None:
    model, data = _setup()
    full = train_generator(model, "fc_relu", data, epochs=2, checkpoint_dir=tmp_path / "a", **KW)
    assert full.finished and full.step == 8 and len(full.history) == 2

    part = train_generator(model, "fc_relu", data, epochs=2, checkpoint_dir=tmp_path / "b", max_steps=3, **KW)
    assert not part.finished and part.step == 3 and part.history == []
    state = torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=False)
    assert (state["epoch"], state["batch"], state["step"]) == (0, 3, 3)

    rest = train_generator(model, "fc_relu", data, epochs=2, checkpoint_dir=tmp_path / "b", **KW)
    assert rest.finished and rest.step == 8
    assert _same_state(rest.generator, full.generator)
    assert rest.history == full.history
    # Training the same settings again with resume=True finds the run finished: nothing changes.
    again = train_generator(model, "fc_relu", data, epochs=2, checkpoint_dir=tmp_path / "b", **KW)
    assert again.step == 8 and _same_state(again.generator, full.generator)


def test_seeded_runs_repeat_and_seeds_differ() -> None:
    model, data = _setup()
    a = train_generator(model, "fc_relu", data, epochs=1, **KW)
    b = train_generator(model, "fc_relu", data, epochs=1, **KW)
    c = train_generator(model, "fc_relu", data, epochs=1, **dict(KW, seed=4))
    assert _same_state(a.generator, b.generator)
    assert not _same_state(a.generator, c.generator)
    assert set(a.history[0]) == {"epoch", "pixel", "feature", "adversarial", "discriminator"}


def test_checkpoint_every_and_resume_false(tmp_path: Path) -> None:
    model, data = _setup()
    run = train_generator(model, "fc_relu", data, epochs=1, checkpoint_dir=tmp_path, checkpoint_every=2,
                          max_steps=2, **KW)
    assert run.step == 2 and (tmp_path / CHECKPOINT_NAME).is_file()
    fresh = train_generator(model, "fc_relu", data, epochs=1, checkpoint_dir=tmp_path, resume=False, max_steps=1, **KW)
    assert fresh.step == 1
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=False)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    model, data = _setup()
    train_generator(model, "fc_relu", data, epochs=1, checkpoint_dir=tmp_path, max_steps=1, **KW)
    with pytest.raises(ConfigError, match="batch_size"):
        train_generator(model, "fc_relu", data, epochs=1, checkpoint_dir=tmp_path, **dict(KW, batch_size=4))
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptWeightsError, match="resume=False"):
        train_generator(model, "fc_relu", data, epochs=1, checkpoint_dir=tmp_path, **KW)


def test_saved_generator_reloads_with_stats_and_meta(tmp_path: Path) -> None:
    model, data = _setup()
    gen = train_generator(model, "fc_relu", data, epochs=1, **KW).generator
    path = save_generator(gen, tmp_path / "g.pt", half=False)
    back = load_generator(path)
    code = torch.rand(4, 5)
    assert torch.equal(back(code), gen(code))
    assert back.code_shape == (5,) and back.image_size == 8 and back.inverted_layer == "fc_relu"
    assert back.meta["settings"]["comparator_layers"] == ["pool", "fc"]
    for x, y in zip(back.code_bounds(2.0), gen.code_bounds(2.0)):
        assert torch.equal(x, y)
    half = load_generator(save_generator(gen, tmp_path / "h.pt"))
    assert half.fc1.weight.dtype == torch.float32
    assert torch.allclose(half(code), gen(code), atol=2e-3)


def test_atomic_checkpoint_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "ckpt.pt"
    save_torch({"version": 1}, target)
    before = target.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_torch({"version": 2}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]

    model, data = _setup()
    with pytest.raises(OSError, match="disk full"):
        train_generator(model, "fc_relu", data, epochs=1, checkpoint_dir=tmp_path / "run", **KW)
    assert list((tmp_path / "run").iterdir()) == []


def test_code_statistics_exact_on_hand_set_layer() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, -1.0, 0, 0]]))
        model[1].bias.zero_()
    images = torch.tensor([[0.1, 0.2, 0, 0], [0.3, 0.4, 0, 0], [0.5, 0.9, 0, 0]]).view(3, 1, 2, 2)
    stats = code_statistics(model, "1", TensorImages(images), batch_size=2)
    expect = np.array([[0.1, -0.2], [0.3, -0.4], [0.5, -0.9]])
    np.testing.assert_allclose(stats["mean"].numpy(), expect.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["std"].numpy(), expect.std(0), rtol=1e-5)
    np.testing.assert_allclose(stats["max"].numpy(), expect.max(0), rtol=1e-6)
    np.testing.assert_allclose(stats["percentiles"][2].numpy(), np.median(expect, 0), rtol=1e-6)
    assert stats["count"] == 3


def test_bounds_for_signed_conv_code_and_rgb_images() -> None:
    model, _ = _setup()
    model.conv, model.input_space = nn.Conv2d(3, 3, 3, padding=1), UnitSpace(3)
    data = TensorImages(torch.rand(16, 3, 8, 8))
    run = train_generator(model, "conv", data, epochs=1, **dict(KW, comparator_layers=None))
    gen = run.generator
    assert gen.code_shape == (3, 8, 8) and gen.channels == 3
    assert gen(torch.zeros(2, 3, 8, 8)).shape == (2, 3, 8, 8)
    lower, upper = gen.code_bounds(1.0)
    assert lower.shape == upper.shape == (3, 8, 8)
    signed = gen.code_min < 0
    assert signed.any()
    assert torch.allclose(lower[signed], (gen.code_mean - gen.code_std)[signed])
    assert torch.all(lower <= upper)


def test_bad_arguments_raise_package_errors() -> None:
    model, data = _setup()
    with pytest.raises(ConfigError, match="batch_size"):
        train_generator(model, "fc_relu", data, **dict(KW, batch_size=64))
    with pytest.raises(LayerNotFoundError):
        train_generator(model, "fc7", data, **KW)
    with pytest.raises(ConfigError, match="image_size"):
        SmallGenerator((5,), image_size=10)
    with pytest.raises(ConfigError, match="code statistics"):
        SmallGenerator((5,), image_size=8).code_bounds()
    disc = CodeDiscriminator((5,), image_size=8)
    assert disc(torch.rand(2, 1, 8, 8), torch.rand(2, 5)).shape == (2,)


@pytest.mark.parametrize("option", ["checkpoint_every", "max_steps"])
def test_non_positive_step_options_are_refused(option):
    from lucent_dgn.errors import ConfigError
    from lucent_dgn.training.generator import train_generator
    with pytest.raises(ConfigError, match=option):
        train_generator(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4)), "1",
                        TensorImages(torch.rand(8, 1, 8, 8)), **{option: 0}, progress=False)


def test_foreign_checkpoint_is_refused(tmp_path):
    from lucent_dgn.errors import CorruptWeightsError
    from lucent_dgn.training.generator import CHECKPOINT_NAME, train_generator
    torch.save({"something": 1}, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(CorruptWeightsError, match="checkpoint"):
        train_generator(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4)), "1",
                        TensorImages(torch.rand(8, 1, 8, 8)), batch_size=4, checkpoint_dir=tmp_path, progress=False)
