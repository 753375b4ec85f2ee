"""Per-step image operations vs SciPy / NumPy re-implementations of cnnpref's utils (spec section 8)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter

from lucent_dgn.errors import ConfigError, ShapeError
from lucent_dgn.render.image_ops import (clip_extreme_, clip_extreme_pixel, clip_small_contribution_,
                                         clip_small_norm_, gaussian_blur, gaussian_kernel1d, normalise_img,
                                         percentile, pixel_norm, roll_)


# ------------------------------------------------------------------ NumPy references (spec section 8)
def np_clip_extreme(img, pct):
    pct = min(max(pct, 0.0), 100.0)
    return np.clip(img, np.percentile(img, pct / 2), np.percentile(img, 100 - pct / 2))


def np_image_norm(img):
    return np.sqrt(np.sum(img ** 2, axis=0))


def np_clip_small_norm(img, pct):
    img = img.copy()
    n = np_image_norm(img)
    img[:, n < np.percentile(n, min(max(pct, 0.0), 100.0))] = 0
    return img


def np_clip_small_contribution(img, grad, pct):
    img = img.copy()
    n = np_image_norm(img * grad)
    img[:, n < np.percentile(n, pct)] = 0
    return img


def scipy_blur(x, sigma):
    return np.stack([np.stack([gaussian_filter(x[i, c], sigma) for c in range(x.shape[1])])
                     for i in range(x.shape[0])])


rng = np.random.default_rng(1234)


# ------------------------------------------------------------------------------------------ blur
@pytest.mark.parametrize("sigma", [0.5, 2.0, 2.5])
@pytest.mark.parametrize("hw", [(23, 31), (40, 17), (227, 227)])
def test_blur_matches_scipy_float32(sigma, hw):
    x = rng.uniform(0, 255, size=(2, 3) + hw).astype(np.float32)
    out = gaussian_blur(torch.from_numpy(x), sigma)
    assert out.dtype == torch.float32 and out.shape == x.shape
    np.testing.assert_allclose(out.numpy(), scipy_blur(x, sigma), rtol=0, atol=1e-4)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5, 6.0])
def test_blur_matches_scipy_float64_and_large_radius(sigma):
    x = rng.normal(0, 50, size=(1, 3, 5, 7))  # radius up to 24 > image size: repeated reflection
    out = gaussian_blur(torch.from_numpy(x), sigma)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), scipy_blur(x, sigma), rtol=0, atol=1e-10)


def test_kernel_radius_and_sum():
    w, r = gaussian_kernel1d(2.5)
    assert r == 10 and len(w) == 21 and abs(sum(w) - 1) < 1e-15
    assert gaussian_kernel1d(0.51)[1] == 2


def test_blur_noop_for_nonpositive_sigma():
    x = torch.rand(1, 3, 4, 4)
    assert gaussian_blur(x, 0) is x and gaussian_blur(x, -1.0) is x
    assert torch.equal(gaussian_blur(x, 0.1), x)  # radius 0


def test_blur_batch_items_independent():
    x = torch.from_numpy(rng.uniform(0, 255, (3, 3, 20, 24)).astype(np.float32))
    both = gaussian_blur(x, 2.0)
    for i in range(3):
        torch.testing.assert_close(both[i:i + 1], gaussian_blur(x[i:i + 1], 2.0), rtol=0, atol=1e-5)


def test_blur_rejects_bad_input():
    with pytest.raises(ConfigError, match="`x`"):
        gaussian_blur(torch.zeros(1, 3, 4, 4, dtype=torch.int64), 1.0)
    with pytest.raises(ShapeError):
        gaussian_blur(torch.zeros(4), 1.0)
    with pytest.raises(ConfigError, match="`sigma`"):
        gaussian_blur(torch.zeros(1, 1, 4, 4), "2")


@settings(max_examples=15, deadline=None)
@given(c=st.floats(-300, 300), sigma=st.floats(0.1, 5), h=st.integers(1, 9), w=st.integers(1, 9))
def test_blur_preserves_constants(c, sigma, h, w):
    x = torch.full((2, 3, h, w), c, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(x, sigma), x, rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------------- percentiles
@pytest.mark.parametrize("q", [0, 0.02, 2.5, 5, 33.3, 50, 66.6, 97.5, 99.98, 100])
def test_percentile_equals_numpy_per_item(q):
    x = rng.normal(size=(3, 3, 11, 13))
    got = percentile(torch.from_numpy(x), q)
    assert got.dtype == torch.float64 and got.shape == (3,)
    assert np.array_equal(got.numpy(), [np.percentile(x[i], q) for i in range(3)])


def test_percentile_sequence_and_ties():
    x = torch.tensor([[1.0, 1.0, 2.0, 2.0, 2.0], [5.0, 4.0, 3.0, 2.0, 1.0]])
    got = percentile(x, [0, 10, 50, 90, 100])
    ref = np.percentile(x.numpy(), [0, 10, 50, 90, 100], axis=1).T
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match="`q`"):
        percentile(x, 101)


# ---------------------------------------------------------------------------------- clip_extreme
def test_clip_extreme_matches_numpy_and_counts():
    x = rng.normal(size=(1, 3, 227, 227)).astype(np.float32)
    t = torch.from_numpy(x.copy())
    out = clip_extreme_(t, 0.04)
    assert out is t
    ref = np_clip_extreme(x[0], 0.04)
    np.testing.assert_allclose(t[0].numpy(), ref, rtol=0, atol=1e-6)
    flat = np.sort(x.ravel())
    lo, hi = t.min().item(), t.max().item()
    assert (flat < lo).sum() == 31 and (flat > hi).sum() == 31  # 154,587 Gaussian values


def test_clip_extreme_per_item_float64_exact():
    x = rng.normal(size=(2, 3, 9, 8)) * np.array([1.0, 100.0]).reshape(2, 1, 1, 1)
    t = clip_extreme_(torch.from_numpy(x.copy()), 10.0)
    for i in range(2):
        assert np.array_equal(t[i].numpy(), np_clip_extreme(x[i], 10.0))


def test_clip_extreme_pct_is_clamped():
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    assert torch.equal(clip_extreme_(x.clone(), -5), x)
    med = np.percentile(x.numpy(), 50)
    assert torch.allclose(clip_extreme_(x.clone(), 150), torch.full_like(x, med))


@settings(max_examples=20, deadline=None)
@given(pct=st.floats(0, 100), h=st.integers(1, 6), w=st.integers(1, 6), seed=st.integers(0, 2 ** 16))
def test_clip_extreme_range_property(pct, h, w, seed):
    x = torch.randn(2, 3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    bounds = percentile(x, [pct / 2, 100 - pct / 2])
    out = clip_extreme_(x.clone(), pct)
    for i in range(2):
        assert out[i].min() >= bounds[i, 0] and out[i].max() <= bounds[i, 1]
        inside = (x[i] >= bounds[i, 0]) & (x[i] <= bounds[i, 1])
        assert torch.equal(out[i][inside], x[i][inside])


# ------------------------------------------------------------------------- small norm / contribution
def _distinct_norm_image(h, w, dtype=np.float32):
    img = rng.normal(size=(3, h, w)).astype(dtype)
    scale = (rng.permutation(h * w) + 1).reshape(h, w) / (h * w)  # distinct radii
    return (img / np.sqrt((img ** 2).sum(0)) * scale).astype(dtype)


def test_clip_small_norm_exact_count_227():
    img = _distinct_norm_image(227, 227)
    t = torch.from_numpy(img[None].copy())
    clip_small_norm_(t, 5)
    zero = (t[0] == 0).all(dim=0)
    assert int(zero.sum()) == 2577
    ref = np_clip_small_norm(img, 5)
    assert np.array_equal(t[0].numpy(), ref)
    assert np.array_equal(t[0].numpy()[:, ~zero.numpy()], img[:, ~zero.numpy()])  # the rest unchanged


def test_clip_small_contribution_matches_numpy():
    img = rng.normal(size=(2, 3, 30, 20))
    grad = rng.normal(size=(2, 3, 30, 20))
    t = clip_small_contribution_(torch.from_numpy(img.copy()), torch.from_numpy(grad), 7.5)
    for i in range(2):
        assert np.array_equal(t[i].numpy(), np_clip_small_contribution(img[i], grad[i], 7.5))
    with pytest.raises(ShapeError, match="`grad`"):
        clip_small_contribution_(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5), 5)


def test_clip_small_norm_per_item_and_clamp():
    img = rng.normal(size=(2, 3, 10, 10))
    img[1] *= 1000.0
    t = clip_small_norm_(torch.from_numpy(img.copy()), 20)
    for i in range(2):
        assert np.array_equal(t[i].numpy(), np_clip_small_norm(img[i], 20))
    assert torch.equal(clip_small_norm_(torch.from_numpy(img.copy()), -3), torch.from_numpy(img))
    everything = clip_small_norm_(torch.from_numpy(img.copy()), 300)  # clamped to 100: all but the max
    assert int((everything != 0).any(dim=1).sum()) == 2
    with pytest.raises(ShapeError):
        clip_small_norm_(torch.zeros(3, 4, 4), 5)


@settings(max_examples=20, deadline=None)
@given(pct=st.floats(0, 100), h=st.integers(1, 7), w=st.integers(1, 7), seed=st.integers(0, 2 ** 16))
def test_small_norm_zeroes_exactly_those_below(pct, h, w, seed):
    x = torch.randn(2, 3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    norms = pixel_norm(x)
    thr = percentile(norms, pct)
    out = clip_small_norm_(x.clone(), pct)
    for i in range(2):
        below = norms[i] < thr[i]
        assert torch.equal(out[i][:, below], torch.zeros_like(out[i][:, below]))
        assert torch.equal(out[i][:, ~below], x[i][:, ~below])


# ------------------------------------------------------------------------------------- roll, saving
def test_roll_in_place():
    x = torch.arange(2 * 1 * 4 * 5, dtype=torch.float32).view(2, 1, 4, 5)
    ref = torch.roll(x, shifts=(1, -2), dims=(-2, -1))
    y = x.clone()
    assert roll_(y, 1, -2) is y and torch.equal(y, ref)
    z = torch.zeros(1, 1, 3, 3)
    z[0, 0, 0, 0] = 1
    roll_(z, 1, 2)  # positive = down / right
    assert z[0, 0, 1, 2] == 1


def test_normalise_img():
    out = normalise_img(np.array([[0.0, 1.0, 2.0]]) - 5)
    assert out.dtype == np.uint8 and out.tolist() == [[0, 127, 255]]  # truncation
    assert normalise_img(np.full((4, 4, 3), 7.5)).tolist() == np.zeros((4, 4, 3), np.uint8).tolist()
    img = rng.normal(0, 80, (9, 8, 3)).astype(np.float32)
    n = normalise_img(img)
    assert n.min() == 0 and n.max() == 255
    assert normalise_img(np.array([3, 5], dtype=np.int64)).tolist() == [0, 255]


def test_clip_extreme_pixel_numpy():
    img = rng.normal(0, 50, (20, 30, 3))
    np.testing.assert_array_equal(clip_extreme_pixel(img, 0.04), np_clip_extreme(img, 0.04))
    img32 = img.astype(np.float32)
    assert clip_extreme_pixel(img32, 1).dtype == np.float32
    np.testing.assert_array_equal(clip_extreme_pixel(img, -1), img)
