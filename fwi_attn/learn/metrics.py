"""Image metrics for predicted velocity models, computed as OpenFWI computes them, in m/s and for salt.

Every per-sample function takes predictions and targets ``[n, nz, nx]`` (numpy or torch) and
returns one value per sample, ``[n]`` float64, so tables can give means and spreads alike;
:func:`pooled` gives the whole-test-set figures OpenFWI's tables report.

As OpenFWI computes them (Deng et al. 2022, arXiv:2111.02926; ``test.py`` and ``pytorch_ssim.py``
of lanl/OpenFWI), on the **raw network output** (no clipping):

* ``mae``, ``mse``: velocity min-max normalised to [-1, 1] with the physical bounds
  ``vmin``/``vmax`` (``geology.vmin``/``vmax``). OpenFWI's MAE and MSE are ``nn.L1Loss`` /
  ``nn.MSELoss`` over every cell of the whole test set: :func:`pooled` gives those, and its
  ``rmse`` is the square root of the pooled MSE. The per-sample ``rmse`` (square root of each
  sample's MSE) is for statistics only: its mean is biased low against the pooled RMSE.
* ``ssim``: OpenFWI's SSIM: images mapped to [0, 1] (``y / 2 + 0.5`` of the [-1, 1] scale), an
  11 x 11 Gaussian window (sigma 1.5) applied with zero padding of 5 cells, C1 = 0.01², C2 = 0.03²,
  and the mean of the full-size SSIM map. Over a test set of equal-sized samples, the mean of the
  per-sample values is OpenFWI's figure.
* ``ssim_valid``: the same window without padding, averaged over the valid part of the map
  (``pytorch_msssim``'s and scikit-image's convention, ``structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=1)``); NaN for grids under 11 cells.

Ours:

* ``mae_ms``, ``rmse_ms``: in m/s.
* ``psnr``: ``10 log10(1 / MSE)`` on [0, 1], i.e. peak = vmax - vmin; capped at 100 dB for a
  perfect prediction (JSON has no infinity).
* ``salt_iou``: intersection over union of the salt masks (velocity > ``salt_threshold``).
  A right-shaped body predicted a little slow (below the threshold) scores 0: it mixes shape
  with calibration.
* ``salt_iou_band``: the IoU averaged over a band of thresholds, which separates shape from
  calibration. The band is the sample's own gap between its sediments and its salt: from
  ``lo``, the fastest true non-salt cell (the sediment maximum), to ``hi``, the slowest true
  salt cell (the salt velocity); every threshold inside it cuts the same true salt mask, the one
  of ``salt_threshold``. With the ``K = 20`` midpoints ``tau_k = lo + (k - 1/2) (hi - lo) / K``,
  ``k = 1..K``::

      salt_iou_band = (1 / K) sum_k IoU(pred > tau_k, true > salt_threshold)

  i.e. the fraction of the thresholds a geophysicist could pick on the true model at which the
  prediction gives the true body. A perfect prediction scores 1; a right-shaped body predicted at
  ``v`` between ``lo`` and ``hi`` over sediments predicted below ``lo`` scores about
  ``(v - lo) / (hi - lo)``. The generator keeps sediments below ``geology.layers.v_deep``'s upper
  bound (4000 m/s by default) and salt within ``geology.salt.velocity`` (4400-4500 m/s), and a
  window's sediment maximum depends on its burial: in 300 default 64 x 64 windows ``lo`` has a
  median of 3081 m/s (10-90 %: 2461-3432 m/s), so a body predicted 125 m/s below the 4200 m/s
  threshold typically scores ~0.7 where ``salt_iou`` gives 0. Without true salt the band is the
  single threshold ``salt_threshold`` (the score is ``salt_iou``'s: 0, or NaN when the prediction
  has none either); without true sediments ``lo`` is ``salt_threshold``.
* ``salt_boundary_f``: F-score of salt boundaries: a boundary cell is a salt cell with a
  non-salt 4-neighbour (the model's edges are not boundaries); a predicted boundary cell is
  correct when a true one lies within ``tolerance`` cells (Chebyshev distance), and
  vice versa for recall.

Salt metrics when **neither** truth nor prediction has salt (or a boundary) are NaN: such a
sample says nothing about salt delineation. Means use ``nanmean`` and are None (JSON null) when
every sample is NaN. When only one side has salt the score is 0.

The names (:data:`METRICS`, :data:`POOLED`) and every numpy function here import without torch, so
tables, figures and the report read them directly; only SSIM, whose reference implementation is
a torch convolution, imports torch when it is computed.

Every model is scored the same way, on its raw output. ``compute_metrics(..., clip=True)`` gives
the second view, predictions clipped to [vmin, vmax] first (a linear head may overshoot the
physical range; a Tanh head cannot), which ``fwi-attn evaluate`` stores as ``clipped``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from fwi_attn.data.normalize import VelocityScale, is_tensor

#: Every per-sample metric, in the order tables show them.
METRICS = ("mae", "mse", "rmse", "ssim", "ssim_valid", "mae_ms", "rmse_ms", "psnr", "salt_iou", "salt_iou_band",
           "salt_boundary_f")
#: Whole-test-set figures of :func:`pooled` (OpenFWI's MAE, MSE, RMSE and SSIM, and ours in m/s).
POOLED = ("mae", "mse", "rmse", "ssim", "mae_ms", "rmse_ms")
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2
PSNR_CAP_DB = 100.0
#: Thresholds in the band of :func:`salt_iou_band`.
SALT_BAND_STEPS = 20


def _np(x) -> np.ndarray:
    if is_tensor(x):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"expected velocity [n, nz, nx], got shape {list(x.shape)}")
    return x


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p, t = _np(pred), _np(true)
    if p.shape != t.shape:
        raise ValueError(f"prediction {list(p.shape)} and target {list(t.shape)} differ in shape")
    return p, t


def mae(pred, true) -> np.ndarray:
    """Mean absolute error per sample, in the inputs' units. ``[n, nz, nx]`` -> ``[n]``."""
    p, t = _pair(pred, true)
    return np.abs(p - t).mean(axis=(1, 2))


def mae_torch(pred, true):
    """Mean absolute error per sample of tensors ``[n, 1, nz, nx]`` (or ``[n, nz, nx]``), float64 ``[n]``
    on their device, in the inputs' units (used in training's validation).

    The difference is taken in the inputs' precision and summed in float64, so a mean over many
    cells does not lose float32's digits.
    """
    import torch

    if pred.shape != true.shape:
        raise ValueError(f"prediction {list(pred.shape)} and target {list(true.shape)} differ in shape")
    cells = pred[0].numel() if len(pred) else 1
    return (pred - true).abs().flatten(1).sum(dim=1, dtype=torch.float64) / cells


def rmse(pred, true) -> np.ndarray:
    """Root-mean-square error per sample, in the inputs' units. ``[n, nz, nx]`` -> ``[n]``."""
    p, t = _pair(pred, true)
    return np.sqrt(np.square(p - t).mean(axis=(1, 2)))


def psnr(pred01, true01) -> np.ndarray:
    """PSNR in dB per sample for images on [0, 1] (peak 1), capped at 100 dB."""
    p, t = _pair(pred01, true01)
    mse = np.square(p - t).mean(axis=(1, 2))
    return np.minimum(10.0 * np.log10(1.0 / np.maximum(mse, 1e-300)), PSNR_CAP_DB)


def gaussian_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype=None):
    """The normalised 1-D Gaussian ``[size]`` (a torch tensor, float64 unless ``dtype``), centred on ``size // 2``."""
    import torch

    dtype = torch.float64 if dtype is None else dtype
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return (g / g.sum()).to(dtype)


def ssim_torch(pred01, true01, padding: str = "zero"):
    """SSIM per sample of ``[n, 1, nz, nx]`` images on [0, 1]; differentiable (training's
    ``l1_ssim`` loss uses it).

    Args:
        padding: ``"zero"``: OpenFWI's SSIM (the window zero-pads the image by 5 cells; the mean
            of the full-size map); ``"valid"``: no padding, the mean of the valid part of the map
            (needs at least 11 cells per axis).

    Returns:
        ``[n]`` in the inputs' dtype (float32 inputs are computed in float32, as OpenFWI does).
    """
    import torch
    import torch.nn.functional as F

    if padding not in ("zero", "valid"):
        raise ValueError(f"SSIM padding must be 'zero' or 'valid', got {padding!r}")
    if pred01.shape != true01.shape:
        raise ValueError(f"prediction {list(pred01.shape)} and target {list(true01.shape)} differ in shape")
    if padding == "valid" and min(pred01.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM without padding needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} cells, "
                         f"got {list(pred01.shape[-2:])}")
    dtype = torch.float64 if pred01.dtype == torch.float64 else torch.float32
    a, b = pred01.to(dtype), true01.to(dtype)
    pad = SSIM_WINDOW // 2 if padding == "zero" else 0
    # The window is the outer product of a 1-D Gaussian, so blurring with it is a column pass
    # then a row pass (zero padding included: the row pass sees zeros wherever the 2-D window
    # would): 22 taps instead of 121. The five blurred maps go through one call.
    g = gaussian_1d(dtype=dtype).to(a.device)
    col, row = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)
    n, c, h, w = a.shape
    stack = torch.cat([a, b, a * a, b * b, a * b]).reshape(5 * n * c, 1, h, w)
    blurred = F.conv2d(F.conv2d(stack, col, padding=(pad, 0)), row, padding=(0, pad))
    mu_a, mu_b, aa, bb, ab = blurred.reshape(5, n, c, *blurred.shape[-2:]).unbind(0)
    var_a = aa - mu_a ** 2
    var_b = bb - mu_b ** 2
    cov = ab - mu_a * mu_b
    c1, c2 = SSIM_C1, SSIM_C2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(1).mean(dim=1)


def ssim(pred01, true01, padding: str = "zero") -> np.ndarray:
    """SSIM per sample for images ``[n, nz, nx]`` on [0, 1] (see :func:`ssim_torch`), in float64;
    NaN for ``padding="valid"`` on grids smaller than the 11-cell window."""
    p, t = _pair(pred01, true01)
    if padding == "valid" and min(p.shape[1:]) < SSIM_WINDOW:
        return np.full(len(p), np.nan)
    import torch

    with torch.no_grad():
        out = ssim_torch(torch.from_numpy(p)[:, None], torch.from_numpy(t)[:, None], padding)
    return out.numpy()


def salt_iou(pred_ms, true_ms, threshold: float) -> np.ndarray:
    """IoU of the salt masks (velocity > ``threshold`` m/s) per sample; NaN when neither has salt."""
    p, t = _pair(pred_ms, true_ms)
    pm, tm = p > threshold, t > threshold
    inter = (pm & tm).sum(axis=(1, 2))
    union = (pm | tm).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def salt_band(true_ms: np.ndarray, threshold: float) -> tuple[float, float]:
    """The band of :func:`salt_iou_band` of one true model ``[nz, nx]`` (m/s): ``(lo, hi)``, the
    fastest non-salt and the slowest salt velocity; ``(threshold, threshold)`` without salt."""
    salt = true_ms > threshold
    if not salt.any():
        return float(threshold), float(threshold)
    lo = float(true_ms[~salt].max()) if not salt.all() else float(threshold)
    return lo, float(true_ms[salt].min())


def salt_iou_band(pred_ms, true_ms, threshold: float, steps: int = SALT_BAND_STEPS) -> np.ndarray:
    """Salt IoU averaged over the thresholds between each sample's sediment maximum and its salt
    velocity (module docstring), per sample ``[n]``; NaN when neither side has salt."""
    p, t = _pair(pred_ms, true_ms)
    frac = (np.arange(steps) + 0.5) / steps
    out = np.empty(len(p), dtype=np.float64)
    for i, (a, b) in enumerate(zip(p, t)):
        lo, hi = salt_band(b, threshold)
        taus = lo + frac * (hi - lo)
        pm, tm = a[None] > taus[:, None, None], (b > threshold)[None]
        inter = (pm & tm).sum(axis=(1, 2))
        union = (pm | tm).sum(axis=(1, 2))
        out[i] = np.nan if not union.any() else float(np.mean(inter / np.maximum(union, 1)))
    return out


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary cells of a 2-D mask ``[nz, nx]``: mask cells with a non-mask 4-neighbour.

    The model's outer edges do not count (``border_value=1``): a body cut by the edge of the
    grid has no boundary there.
    """
    return mask & ~ndimage.binary_erosion(mask, border_value=1)


def _boundary_f1(pm: np.ndarray, tm: np.ndarray, tolerance: int) -> float:
    pb, tb = boundary(pm), boundary(tm)
    n_p, n_t = int(pb.sum()), int(tb.sum())
    if n_p == 0 and n_t == 0:
        return math.nan
    if n_p == 0 or n_t == 0:
        return 0.0
    if tolerance > 0:
        square = np.ones((2 * tolerance + 1,) * 2, dtype=bool)  # Chebyshev distance <= tolerance
        near_t = ndimage.binary_dilation(tb, structure=square)
        near_p = ndimage.binary_dilation(pb, structure=square)
    else:
        near_t, near_p = tb, pb
    precision = (pb & near_t).sum() / n_p
    recall = (tb & near_p).sum() / n_t
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def salt_boundary_f(pred_ms, true_ms, threshold: float, tolerance: int = 1) -> np.ndarray:
    """Boundary F-score of the salt masks per sample (see module docstring); NaN when
    neither side has a salt boundary."""
    p, t = _pair(pred_ms, true_ms)
    return np.array([_boundary_f1(a > threshold, b > threshold, int(tolerance)) for a, b in zip(p, t)],
                    dtype=np.float64)


def compute_metrics(pred_ms, true_ms, vmin: float, vmax: float, salt_threshold: float,
                    boundary_tolerance: int = 1, clip: bool = False) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS` per sample.

    Args:
        pred_ms, true_ms: velocity ``[n, nz, nx]`` in m/s; predictions as the network gave them.
        vmin, vmax: physical bounds (m/s) defining OpenFWI's normalised scale.
        salt_threshold: m/s above which a cell is salt.
        boundary_tolerance: cells of slack for the boundary F-score.
        clip: clip predictions to [vmin, vmax] first (the second view; OpenFWI's is unclipped).

    Returns:
        ``{name: float64 [n]}``.
    """
    p, t = _pair(pred_ms, true_ms)
    if clip:
        p = np.clip(p, vmin, vmax)
    scale = VelocityScale(float(vmin), float(vmax))
    pn, tn = scale.velocity(p), scale.velocity(t)
    p01, t01 = scale.unit_interval(pn), scale.unit_interval(tn)
    mse = np.square(pn - tn).mean(axis=(1, 2))
    return {
        "mae": mae(pn, tn),
        "mse": mse,
        "rmse": np.sqrt(mse),
        "ssim": ssim(p01, t01, "zero"),
        "ssim_valid": ssim(p01, t01, "valid"),
        "mae_ms": mae(p, t),
        "rmse_ms": rmse(p, t),
        "psnr": psnr(p01, t01),
        "salt_iou": salt_iou(p, t, salt_threshold),
        "salt_iou_band": salt_iou_band(p, t, salt_threshold),
        "salt_boundary_f": salt_boundary_f(p, t, salt_threshold, boundary_tolerance),
    }


def pooled(per_sample: dict[str, np.ndarray]) -> dict[str, float | None]:
    """The whole test set's figures as OpenFWI's tables give them, from per-sample values of
    equal-sized samples: MAE and MSE over every cell (the mean of the per-sample means), RMSE as the
    square root of that MSE, SSIM as the mean over every sample's full map; the same in m/s
    (``rmse_ms`` from the per-sample ``rmse_ms``, squared and pooled)."""
    def mean(name):
        v = np.asarray(per_sample[name], dtype=np.float64)
        return float(v.mean()) if v.size else math.nan

    out = {"mae": mean("mae"), "mse": mean("mse"), "ssim": mean("ssim"), "mae_ms": mean("mae_ms")}
    out["rmse"] = math.sqrt(out["mse"])
    out["rmse_ms"] = math.sqrt(float(np.mean(np.square(np.asarray(per_sample["rmse_ms"], np.float64)))))
    return {k: _json_float(out[k]) for k in POOLED}


def _json_float(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def summarize(per_sample: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Mean of each metric over samples, ignoring NaN; None where every sample is NaN."""
    out = {}
    for name, values in per_sample.items():
        v = np.asarray(values, dtype=np.float64)
        finite = v[~np.isnan(v)]
        out[name] = _json_float(finite.mean()) if finite.size else None
    return out


def to_json_lists(per_sample: dict[str, np.ndarray]) -> dict[str, list]:
    """Per-sample arrays as JSON lists (NaN -> null)."""
    return {k: [_json_float(float(x)) for x in np.asarray(v, dtype=np.float64)] for k, v in per_sample.items()}
