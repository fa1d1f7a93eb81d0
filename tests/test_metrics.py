"""Tests for fwi_attn.learn.metrics against hand-computed values, scikit-image and formulas of
OpenFWI's evaluation written out independently here."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from fwi_attn.learn.metrics import (
    METRICS,
    POOLED,
    boundary,
    compute_metrics,
    mae,
    pooled,
    psnr,
    rmse,
    salt_band,
    salt_boundary_f,
    salt_iou,
    salt_iou_band,
    ssim,
    ssim_torch,
    summarize,
    to_json_lists,
)

VMIN, VMAX = 1500.0, 4500.0


def test_mae_rmse_psnr_by_hand():
    true = np.full((1, 2, 2), 3000.0)
    pred = true + np.array([[0.0, 300.0], [-600.0, 900.0]])
    m = compute_metrics(pred, true, VMIN, VMAX, salt_threshold=4200.0)
    assert m["mae_ms"][0] == pytest.approx(450.0)
    assert m["rmse_ms"][0] == pytest.approx(math.sqrt((300**2 + 600**2 + 900**2) / 4))
    # [-1, 1] scale: 3000 m/s of range spans 2 units, so 450 m/s -> 0.3.
    assert m["mae"][0] == pytest.approx(0.3)
    assert m["rmse"][0] == pytest.approx(math.sqrt((300**2 + 600**2 + 900**2) / 4) / 1500)
    # [0, 1] scale: errors 0, 0.1, 0.2, 0.3 -> MSE 0.035.
    assert m["psnr"][0] == pytest.approx(10 * math.log10(1 / 0.035))
    assert m["mse"][0] == pytest.approx((300**2 + 600**2 + 900**2) / 4 / 1500**2)
    assert set(m) == set(METRICS)
    assert math.isnan(m["ssim_valid"][0])  # a 2x2 grid is smaller than the unpadded 11-cell window
    assert 0 < m["ssim"][0] < 1  # zero padding: OpenFWI's SSIM is defined on any grid


def test_raw_predictions_scored_and_clipped_view():
    true = np.stack([np.full((12, 12), 4500.0), np.full((12, 12), 1500.0)])
    pred = np.stack([np.full((12, 12), 5200.0), np.full((12, 12), 1800.0)])  # first overshoots vmax
    raw = compute_metrics(pred, true, VMIN, VMAX, salt_threshold=4200.0)
    assert raw["mae_ms"].tolist() == pytest.approx([700.0, 300.0])  # the raw output is scored
    m = compute_metrics(pred, true, VMIN, VMAX, salt_threshold=4200.0, clip=True)
    assert m["mae_ms"].tolist() == pytest.approx([0.0, 300.0])  # clipped to vmax: exact
    assert m["psnr"][0] == 100.0  # capped, finite for JSON
    assert mae(torch.ones(3, 1, 4, 4), torch.zeros(3, 1, 4, 4)).tolist() == [1.0, 1.0, 1.0]
    assert rmse(np.zeros((4, 4)), np.full((4, 4), 2.0)).tolist() == [2.0]
    assert psnr(np.zeros((1, 3, 3)), np.full((1, 3, 3), 0.1))[0] == pytest.approx(20.0)
    with pytest.raises(ValueError, match="differ in shape"):
        mae(np.zeros((1, 4, 4)), np.zeros((1, 4, 5)))


def openfwi_ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    """OpenFWI's SSIM of two [0, 1] images, written out from its formula (pytorch_ssim.py):
    11 x 11 Gaussian window (sigma 1.5) correlated with zero padding, C1 = 0.01², C2 = 0.03²,
    the mean of the full-size map."""
    x = np.arange(11) - 5
    g = np.exp(-x**2 / (2 * 1.5**2))
    g /= g.sum()
    w = np.outer(g, g)

    def blur(img):
        return ndimage.correlate(img, w, mode="constant", cval=0.0)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    smap = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(smap.mean())


def test_ssim_is_openfwis():
    rng = np.random.default_rng(3)
    a = np.clip(np.cumsum(rng.standard_normal((30, 40)), axis=1) / 20 + 0.5, 0, 1)
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    assert ssim(b[None], a[None])[0] == pytest.approx(openfwi_ssim_reference(b, a), abs=1e-12)
    assert ssim(a[None], a[None])[0] == pytest.approx(1.0)
    # OpenFWI computes it in float32 on the network's tensors: the float32 path agrees to rounding.
    t = ssim_torch(torch.tensor(b, dtype=torch.float32)[None, None], torch.tensor(a, dtype=torch.float32)[None, None])
    assert t.dtype == torch.float32 and float(t[0]) == pytest.approx(openfwi_ssim_reference(b, a), abs=1e-5)
    # Zero padding makes it smaller than the unpadded convention near the borders, where the
    # padded zeros count as structure: the two must not be confused.
    valid = structural_similarity(b, a, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)
    assert ssim(b[None], a[None], padding="valid")[0] == pytest.approx(valid, abs=1e-9)
    assert abs(ssim(b[None], a[None])[0] - valid) > 1e-3


def test_ssim_of_one_cell_by_hand():
    # A 1 x 1 image: the zero-padded window sees the cell with the centre weight m alone, so
    # mu = c m, sigma² = c² m (1 - m), sigma_ab = c_a c_b m (1 - m).
    ca, cb = 0.6, 0.3
    g = np.exp(-(np.arange(11) - 5) ** 2 / 4.5)
    m = (1 / g.sum()) ** 2
    c1, c2 = 1e-4, 9e-4
    want = ((2 * ca * cb * m * m + c1) * (2 * ca * cb * m * (1 - m) + c2)
            / (((ca**2 + cb**2) * m * m + c1) * ((ca**2 + cb**2) * m * (1 - m) + c2)))
    assert ssim(np.full((1, 1, 1), ca), np.full((1, 1, 1), cb))[0] == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="at least 11"):
        ssim_torch(torch.zeros(1, 1, 8, 20), torch.zeros(1, 1, 8, 20), padding="valid")


def test_pooled_figures_are_openfwis():
    # OpenFWI: nn.L1Loss / nn.MSELoss over the whole normalised test tensor, RMSE = sqrt(MSE).
    rng = np.random.default_rng(11)
    true = rng.uniform(VMIN, VMAX, (5, 16, 16))
    pred = true + rng.normal(0, 200, true.shape) * rng.uniform(0.2, 3, (5, 1, 1))  # uneven errors
    per = compute_metrics(pred, true, VMIN, VMAX, salt_threshold=4200.0)
    whole = pooled(per)
    assert set(whole) == set(POOLED)
    pn, tn = torch.tensor((pred - VMIN) / (VMAX - VMIN) * 2 - 1), torch.tensor((true - VMIN) / (VMAX - VMIN) * 2 - 1)
    assert whole["mae"] == pytest.approx(float(torch.nn.L1Loss()(pn, tn)), rel=1e-12)
    assert whole["mse"] == pytest.approx(float(torch.nn.MSELoss()(pn, tn)), rel=1e-12)
    assert whole["rmse"] == pytest.approx(math.sqrt(float(torch.nn.MSELoss()(pn, tn))), rel=1e-12)
    assert whole["rmse_ms"] == pytest.approx(math.sqrt(np.mean((pred - true) ** 2)), rel=1e-12)
    # The mean of per-sample RMSE is below the pooled RMSE (Jensen): not the headline.
    assert per["rmse"].mean() < whole["rmse"]
    ssims = [openfwi_ssim_reference((p - VMIN) / (VMAX - VMIN), (t - VMIN) / (VMAX - VMIN)) for p, t in zip(pred, true)]
    assert whole["ssim"] == pytest.approx(np.mean(ssims), abs=1e-12)


def _block(rows, cols, shape=(10, 10), salt=4450.0, background=2500.0):
    v = np.full(shape, background)
    v[rows[0]:rows[1], cols[0]:cols[1]] = salt
    return v[None]


def test_salt_iou_by_hand():
    true = _block((2, 6), (2, 6))   # 4x4 = 16 salt cells
    pred = _block((2, 6), (3, 7))   # shifted one column: 12 shared, 20 in the union
    assert salt_iou(pred, true, 4200.0)[0] == pytest.approx(12 / 20)
    assert salt_iou(true, true, 4200.0)[0] == 1.0
    no_salt = np.full((1, 10, 10), 2500.0)
    assert salt_iou(pred, no_salt, 4200.0)[0] == 0.0
    assert math.isnan(salt_iou(no_salt, no_salt, 4200.0)[0])


def _layered_with_salt(salt_rows, salt_cols, salt=4450.0, shape=(24, 32)):
    """A true model: sediments 2000 -> 3000 m/s down the rows (the sediment maximum 3000 m/s on the
    last row) and a salt block at ``salt`` m/s."""
    v = np.repeat(np.linspace(2000.0, 3000.0, shape[0])[:, None], shape[1], axis=1)
    v[salt_rows[0]:salt_rows[1], salt_cols[0]:salt_cols[1]] = salt
    return v[None]


def test_salt_iou_band_scores_a_right_shape_predicted_slow_and_not_a_wrong_shape():
    true = _layered_with_salt((6, 14), (8, 20))
    assert salt_band(true[0], 4200.0) == (3000.0, 4450.0)
    rng = np.random.default_rng(0)
    # The right shape, predicted 100-150 m/s below the 4200 m/s threshold; the sediments right.
    slow = true.copy()
    slow[true > 4200] = rng.uniform(4050.0, 4100.0, size=int((true > 4200).sum()))
    assert salt_iou(slow, true, 4200.0)[0] == 0.0
    band = salt_iou_band(slow, true, 4200.0)[0]
    # Thresholds tau_k = 3000 + (k - 1/2) 1450 / 20: those below the slowest predicted salt cell
    # (4050 m/s at the least) give IoU 1, those above the fastest (4100 m/s) give 0.
    below, above = (3000 + (np.arange(20) + 0.5) * 72.5 < 4050).sum(), (3000 + (np.arange(20) + 0.5) * 72.5 > 4100).sum()
    assert below == 14 and above == 5
    assert 14 / 20 <= band <= 15 / 20
    # A wrong shape at the right velocity: a block of the same size elsewhere (no overlap) and
    # one shifted by half its width score low on both.
    elsewhere = _layered_with_salt((15, 23), (0, 12))
    shifted = _layered_with_salt((6, 14), (14, 26))
    for pred, iou in ((elsewhere, 0.0), (shifted, 48 / 144)):
        assert salt_iou(pred, true, 4200.0)[0] == pytest.approx(iou)
        assert salt_iou_band(pred, true, 4200.0)[0] == pytest.approx(iou)
    # Perfect: 1; too slow to stand out from the sediments (below the sediment maximum): 0.
    assert salt_iou_band(true, true, 4200.0)[0] == 1.0
    buried = true.copy()
    buried[true > 4200] = 2900.0
    assert salt_iou_band(buried, true, 4200.0)[0] == 0.0


def test_salt_iou_band_penalises_fast_sediments_and_matches_salt_iou_without_true_salt():
    true = _layered_with_salt((6, 14), (8, 20))
    fast = true.copy()
    fast[:, -4:] = 3700.0  # the deepest four rows of sediment predicted 700 m/s fast (in the band)
    band = salt_iou_band(fast, true, 4200.0)[0]
    taus = 3000 + (np.arange(20) + 0.5) * 72.5
    # Below 3700 m/s the four rows (128 cells) join the predicted salt (96 cells): IoU 96 / 224.
    expected = np.where(taus < 3700, 96 / (96 + 128), 1.0).mean()
    assert band == pytest.approx(expected)
    assert salt_iou(fast, true, 4200.0)[0] == 1.0
    no_salt = np.full((1, 10, 10), 2500.0)
    pred = _block((2, 6), (3, 7))
    assert salt_band(no_salt[0], 4200.0) == (4200.0, 4200.0)
    assert salt_iou_band(pred, no_salt, 4200.0)[0] == 0.0
    assert math.isnan(salt_iou_band(no_salt, no_salt, 4200.0)[0])
    m = compute_metrics(fast, true, VMIN, VMAX, salt_threshold=4200.0)
    assert m["salt_iou_band"][0] == pytest.approx(expected) and "salt_iou_band" in METRICS


def test_boundary_by_hand():
    mask = _block((2, 6), (2, 6))[0] > 4200
    b = boundary(mask)
    assert b.sum() == 12 and not b[3:5, 3:5].any()  # the 4x4 ring; the 2x2 inside is not boundary
    # A body on the model's bottom edge has no boundary along that edge.
    bottom = _block((6, 10), (0, 10))[0] > 4200
    assert boundary(bottom).sum() == 10 and boundary(bottom)[6].all()


def test_salt_boundary_f_by_hand():
    true = _block((2, 6), (2, 6))
    pred = _block((2, 6), (3, 7))
    # Tolerance 1: every predicted boundary cell has a true one within one cell, and back.
    assert salt_boundary_f(pred, true, 4200.0, tolerance=1)[0] == pytest.approx(1.0)
    # Tolerance 0: the rings share the top and bottom rows' columns 3..5: 6 of 12 cells each way.
    assert salt_boundary_f(pred, true, 4200.0, tolerance=0)[0] == pytest.approx(0.5)
    far = _block((2, 6), (8, 10))  # 3 columns away from the true ring: nothing within tolerance 1
    assert salt_boundary_f(far, true, 4200.0, tolerance=1)[0] == 0.0
    no_salt = np.full((1, 10, 10), 2500.0)
    assert salt_boundary_f(no_salt, true, 4200.0)[0] == 0.0
    assert math.isnan(salt_boundary_f(no_salt, no_salt, 4200.0)[0])


def test_summary_ignores_nan():
    per = {"salt_iou": np.array([0.5, np.nan, 1.0]), "mae": np.array([0.1, 0.2, 0.3]),
           "salt_boundary_f": np.array([np.nan, np.nan])}
    mean = summarize(per)
    assert mean["salt_iou"] == pytest.approx(0.75)
    assert mean["mae"] == pytest.approx(0.2)
    assert mean["salt_boundary_f"] is None
    assert to_json_lists(per)["salt_iou"] == [0.5, None, 1.0]
