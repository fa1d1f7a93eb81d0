"""Tests for fwi_attn.learn.metrics against hand-computed values and scikit-image."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from fwi_attn.learn.metrics import (METRICS, boundary, compute_metrics, mae, psnr, rmse, salt_boundary_f, salt_iou, ssim,
                              ssim_torch, summarize, to_json_lists)

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
    assert set(m) == set(METRICS)
    assert math.isnan(m["ssim"][0])  # a 2x2 grid is smaller than SSIM's 11-cell window


def test_per_sample_shapes_and_clipping():
    true = np.stack([np.full((12, 12), 4500.0), np.full((12, 12), 1500.0)])
    pred = np.stack([np.full((12, 12), 5200.0), np.full((12, 12), 1800.0)])  # first overshoots vmax
    m = compute_metrics(pred, true, VMIN, VMAX, salt_threshold=4200.0)
    assert m["mae_ms"].tolist() == pytest.approx([0.0, 300.0])  # clipped to vmax: exact
    assert m["psnr"][0] == 100.0  # capped, finite for JSON
    assert mae(torch.ones(3, 1, 4, 4), torch.zeros(3, 1, 4, 4)).tolist() == [1.0, 1.0, 1.0]
    assert rmse(np.zeros((4, 4)), np.full((4, 4), 2.0)).tolist() == [2.0]
    assert psnr(np.zeros((1, 3, 3)), np.full((1, 3, 3), 0.1))[0] == pytest.approx(20.0)
    with pytest.raises(ValueError, match="differ in shape"):
        mae(np.zeros((1, 4, 4)), np.zeros((1, 4, 5)))


def test_ssim_matches_scikit_image():
    rng = np.random.default_rng(3)
    a = np.clip(np.cumsum(rng.standard_normal((30, 40)), axis=1) / 20 + 0.5, 0, 1)
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)
    assert ssim(b[None], a[None])[0] == pytest.approx(ref, abs=1e-6)
    assert ssim(a[None], a[None])[0] == pytest.approx(1.0)
    # The float32 path used in training agrees too.
    t = ssim_torch(torch.tensor(b, dtype=torch.float32)[None, None], torch.tensor(a, dtype=torch.float32)[None, None])
    assert float(t[0]) == pytest.approx(ref, abs=1e-4)
    with pytest.raises(ValueError, match="at least 11"):
        ssim_torch(torch.zeros(1, 1, 8, 20), torch.zeros(1, 1, 8, 20))


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
