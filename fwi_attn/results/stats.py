"""The inference behind every claim the report makes: arms compared over training seeds and test
samples together, one training variance for every trained arm, Holm over a family of
comparisons, equivalence by two one-sided tests, and the smallest difference a design detects.

The model (``docs/study.md`` explains it for readers of the report). Arm ``v`` (a variant, or a
control) is trained ``a_v`` times (seeds ``s``) and every run is scored on the same ``n`` test
samples ``i``::

    y[v, s, i] = mu_v + u_i + w_vi + b_vs + e_vsi

with a test-sample effect ``u`` shared by every arm, its interaction with the arm ``w``, a
training-run effect ``b`` of one variance ``sigma_b^2`` for *every* arm, and a residual ``e``
(the run-by-sample interaction). The estimand of a comparison of arm ``y`` with arm ``z`` is
``mu_y - mu_z``: the difference expected over training randomness and over test samples like
these. The estimate is the difference of the arms' grand means, ``D = mean_i d_i`` with
``d_i = ybar_{y.i} - ybar_{z.i}``, whose variance is::

    Var(D) = Var_i(d) / n  +  sigma_b^2 (1/a_y + 1/a_z)

The first term is estimated by the paired per-sample differences, whose spread holds the
interaction and residual terms; the training term needs ``sigma_b^2``, which the seeds of
*every* trained arm estimate (method of moments: each arm's two-way table of seeds x samples
gives a seed mean square ``MS_s`` with expectation ``n sigma_b^2 + sigma_e^2`` and a residual
mean square ``MS_e`` with expectation ``sigma_e^2``; pooled over arms by their degrees of
freedom, ``sigma_b^2 = (MS_s - MS_e) / n``, truncated at 0). Pooling over every arm is what the
model assumes and what keeps the test's level: with two seeds an arm, the two compared arms alone
give the training term 2 degrees of freedom, and the simulation in ``tests/test_stats.py`` shows
the per-comparison type-I error at the corrected level three to five times nominal. The interval
is a t interval on Satterthwaite's degrees of freedom.

A family of ``m`` comparisons is corrected by Holm's step-down procedure (adjusted p-values);
the interval reported beside each is the Bonferroni interval at level ``1 - alpha/m``
(simultaneous coverage ``1 - alpha``), which excludes 0 only where Holm's first step rejects. A
difference is claimed where both hold. Equivalence within a margin ``delta`` fixed in the
config before the study runs is claimed by two one-sided tests, each at ``alpha``, Holm-adjusted
over the family. The detectable difference is the true difference that a two-sided t test at the
corrected level ``alpha/m`` finds with 80% power, ``(t_{1-alpha/(2m)} + t_{0.8}) * se``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


def _t_cdf(t: float, df: float) -> float:
    from scipy.special import stdtr

    return float(stdtr(df, t))


def _t_ppf(q: float, df: float) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


#: The family-wise level of every claim.
ALPHA = 0.05
#: The power at which the report states the smallest detectable difference.
POWER = 0.8


@dataclass(frozen=True)
class TrainingVariance:
    """Pooled mean squares of every trained arm's seeds-by-samples table, divided by ``n``.

    Attributes:
        seed: pooled seed mean square over ``n``: estimates ``sigma_b^2 + sigma_e^2 / n``.
        seed_df: its degrees of freedom, ``sum(a_v - 1)``.
        residual: pooled residual mean square over ``n``: estimates ``sigma_e^2 / n``.
        residual_df: ``sum((a_v - 1)(n_v - 1))``.
        arms: how many arms had two seeds or more.
    """

    seed: float
    seed_df: int
    residual: float
    residual_df: int
    arms: int

    @property
    def sigma2(self) -> float:
        """The training variance ``sigma_b^2`` (metric units squared), truncated at 0."""
        return max(0.0, self.seed - self.residual)


def _finite_columns(y: np.ndarray) -> np.ndarray:
    return y[:, ~np.isnan(y).any(axis=0)]


def _two_way_mean_squares(y: np.ndarray) -> tuple[float, float, float]:
    """Seed, sample and residual mean squares of a ``[seeds, samples]`` table (two-way layout
    without replication; ``a >= 2`` and ``n >= 2``)."""
    a, n = y.shape
    seed_means, sample_means = y.mean(axis=1), y.mean(axis=0)
    r = y - seed_means[:, None] - sample_means[None, :] + y.mean()
    return (n * float(np.var(seed_means, ddof=1)), a * float(np.var(sample_means, ddof=1)),
            float(np.sum(r ** 2)) / ((a - 1) * (n - 1)))


def training_variance(arms: Iterable[np.ndarray]) -> TrainingVariance | None:
    """Pool the training variance over every trained arm.

    Args:
        arms: per arm a ``[seeds, samples]`` array of one metric (samples where some run is NaN,
            say a salt metric on a sample without salt, are left out of that arm).

    Returns:
        The pooled mean squares, or None where no arm has two seeds and two samples.
    """
    seed = seed_df = resid = resid_df = 0.0
    used = 0
    for y in arms:
        y = _finite_columns(np.atleast_2d(np.asarray(y, dtype=float)))
        a, n = y.shape
        if a < 2 or n < 2:
            continue
        ms_seed, _, ms_res = _two_way_mean_squares(y)
        seed += (a - 1) * ms_seed / n
        seed_df += a - 1
        resid += (a - 1) * (n - 1) * ms_res / n
        resid_df += (a - 1) * (n - 1)
        used += 1
    if not used:
        return None
    return TrainingVariance(seed / seed_df, int(seed_df), resid / resid_df, int(resid_df), used)


def compare_runs(y: np.ndarray, z: np.ndarray, confidence: float = 0.95, z_trained: bool = True,
                 training: TrainingVariance | None = None) -> dict:
    """Difference of two arms' mean metric over seeds and test samples together (module docstring).

    Args:
        y, z: ``[a, n]`` and ``[b, n]`` per-sample values of ``a`` and ``b`` training runs on the
            same ``n`` test samples.
        confidence: level of the t interval.
        z_trained: False for a reference without training randomness (the mean-model baseline):
            no training term on its side.
        training: the training variance pooled over every trained arm of the study
            (:func:`training_variance`); None pools the two arms given, which is right only where
            they are all the arms there are.

    Returns:
        ``mean_diff`` (y - z), ``se``, ``df``, ``ci_low``, ``ci_high``, ``p_value`` (two-sided),
        ``p_lower``/``p_upper`` (the one-sided p-values of ``mean_diff <= 0`` / ``>= 0``, for
        equivalence tests), ``effect_size`` (``mean_diff`` over the standard deviation of the
        per-sample differences), ``n`` samples, ``seeds`` (a, b), ``seed_variance`` (whether a
        training variance was estimated).
    """
    y, z = np.atleast_2d(np.asarray(y, float)), np.atleast_2d(np.asarray(z, float))
    if y.shape[1] != z.shape[1]:
        raise ValueError(f"the arms were scored on {y.shape[1]} and {z.shape[1]} test samples")
    keep = ~(np.isnan(y).any(axis=0) | np.isnan(z).any(axis=0))
    y, z = y[:, keep], z[:, keep]
    n = y.shape[1]
    d = y.mean(axis=0) - z.mean(axis=0)
    diff = float(d.mean()) if n else math.nan
    if training is None:
        training = training_variance([y] + ([z] if z_trained else []))
    out = {"mean_diff": diff, "n": int(n), "seeds": [int(y.shape[0]), int(z.shape[0])],
           "seed_variance": training is not None}
    if n < 2:
        nan = math.nan
        return {**out, "se": nan, "df": nan, "ci_low": nan, "ci_high": nan, "p_value": nan, "p_lower": nan,
                "p_upper": nan, "effect_size": nan}
    parts = [(1.0 / n, float(np.var(d, ddof=1)), n - 1)]
    if training is not None and training.seed > training.residual:
        k = 1.0 / y.shape[0] + (1.0 / z.shape[0] if z_trained else 0.0)
        parts += [(k, training.seed, training.seed_df), (-k, training.residual, training.residual_df)]
    var = sum(k * m for k, m, _ in parts)
    if var <= 0:  # identical predictions: no uncertainty at all
        same = diff == 0
        return {**out, "se": 0.0, "df": math.inf, "ci_low": diff, "ci_high": diff, "p_value": 1.0 if same else 0.0,
                "p_lower": 1.0 if diff >= 0 else 0.0, "p_upper": 1.0 if diff <= 0 else 0.0,
                "effect_size": 0.0 if same else math.copysign(math.inf, diff)}
    df = var ** 2 / sum((k * m) ** 2 / f for k, m, f in parts if f > 0)
    se = math.sqrt(var)
    half = _t_ppf(0.5 + confidence / 2, df) * se
    t = diff / se
    sd_d = float(np.std(d, ddof=1))
    return {**out, "se": se, "df": float(df), "ci_low": diff - half, "ci_high": diff + half,
            "p_value": 2 * _t_cdf(-abs(t), df), "p_lower": _t_cdf(-t, df), "p_upper": _t_cdf(t, df),
            "effect_size": diff / sd_d if sd_d > 0 else 0.0}


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error over the comparisons), in input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [1.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def detectable_difference(se: float, df: float, alpha: float, power: float = POWER) -> float:
    """The smallest true difference a two-sided t test at level ``alpha`` detects with ``power``
    given the comparison's standard error: ``(t_{1-alpha/2} + t_{power}) * se``."""
    if not (math.isfinite(se) and df > 0):
        return math.nan
    return (_t_ppf(1 - alpha / 2, df) + _t_ppf(power, df)) * se


@dataclass(frozen=True)
class Comparison:
    """One comparison of a family: arm ``arm`` minus arm ``against`` (``*_trained`` say which sides
    carry training randomness; the mean-model baseline does not)."""

    arm: str
    against: str
    arm_trained: bool = True
    against_trained: bool = True
    isolates: str = ""  # what the arm compared with controls for, in words


def _signed(res: dict, flip: bool) -> dict:
    """``compare_runs`` of ``z - y`` from that of ``y - z``."""
    if not flip:
        return res
    return {**res, "mean_diff": -res["mean_diff"], "ci_low": -res["ci_high"], "ci_high": -res["ci_low"],
            "p_lower": res["p_upper"], "p_upper": res["p_lower"], "effect_size": -res["effect_size"],
            "seeds": res["seeds"][::-1]}


def compare_family(values: dict[str, np.ndarray], comparisons: Sequence[Comparison], *, lower_is_better: bool,
                   margins: dict[tuple[str, str], float] | None = None, alpha: float = ALPHA,
                   training: TrainingVariance | None = None) -> list[dict]:
    """Every comparison of a family, corrected together.

    Args:
        values: per arm its ``[seeds, samples]`` values (an untrained arm has one row).
        comparisons: the family; each is corrected for all ``m`` of them.
        lower_is_better: the metric's direction (MAE: True), for ``better``.
        margins: per ``(arm, against)`` the equivalence margin (metric units, > 0); None: none.
        training: the training variance pooled over every trained arm; default: pooled over every
            arm of ``values`` with two seeds or more.

    Returns:
        Per comparison the :func:`compare_runs` fields plus ``arm``, ``against``, ``m``,
        ``ci_low_adj``/``ci_high_adj`` (Bonferroni interval at ``1 - alpha/m``), ``p_holm``,
        ``detectable`` (at ``alpha/m``, 80% power), ``significant`` (Holm rejects and the
        Bonferroni interval excludes 0), ``better``, ``margin``, ``p_equivalence`` (the larger
        one-sided p of the two one-sided tests), ``p_equivalence_holm``, ``equivalent``, and
        ``claimable`` (False where no arm has two seeds: the training variance is unknown, so
        neither a difference nor an equivalence is claimed).
    """
    if training is None:  # an untrained arm has one row and adds nothing to the pool
        training = training_variance(values.values())
    m = max(len(comparisons), 1)
    level = 1 - alpha / m
    out = []
    for c in comparisons:
        y, z = values[c.arm], values[c.against]
        if c.arm_trained:
            res = compare_runs(y, z, 0.95, c.against_trained, training)
        else:  # the trained side first, then the sign turned
            res = _signed(compare_runs(z, y, 0.95, False, training), True)
        se = res["se"]
        half = (_t_ppf(0.5 + level / 2, res["df"]) * se if se > 0 else 0.0) if math.isfinite(se) else math.nan
        e = {"arm": c.arm, "against": c.against, "m": m, **res,
             "ci_low_adj": res["mean_diff"] - half, "ci_high_adj": res["mean_diff"] + half,
             "detectable": detectable_difference(res["se"], res["df"], alpha / m)}
        delta = (margins or {}).get((c.arm, c.against))
        e["margin"] = delta
        if delta is not None and math.isfinite(res["se"]):
            e["p_equivalence"] = _tost(res, delta)
        out.append(e)
    for e, p in zip(out, holm([_p(e["p_value"]) for e in out])):
        e["p_holm"] = p
    tested = [e for e in out if "p_equivalence" in e]
    for e, p in zip(tested, holm([_p(e["p_equivalence"]) for e in tested])):
        e["p_equivalence_holm"] = p
    for e in out:
        # Without any arm's second seed the training variance is unknown: the intervals hold the
        # test samples' variance only, and no claim about trained networks can rest on them.
        e["claimable"] = bool(e["seed_variance"])
        e["significant"] = bool(e["claimable"] and e["p_holm"] < alpha and (e["ci_high_adj"] < 0 or e["ci_low_adj"] > 0))
        gain = e["mean_diff"] < 0 if lower_is_better else e["mean_diff"] > 0
        e["better"] = e["significant"] and gain
        e["equivalent"] = bool(e["claimable"] and e.get("p_equivalence_holm", 1.0) < alpha)
    return out


def _p(p: float) -> float:
    return 1.0 if not math.isfinite(p) else p


def _tost(res: dict, delta: float) -> float:
    """The p-value of two one-sided tests of ``|mu_y - mu_z| < delta`` (the larger of the two)."""
    if res["se"] == 0:
        return 0.0 if abs(res["mean_diff"]) < delta else 1.0
    lower = _t_cdf(-(res["mean_diff"] + delta) / res["se"], res["df"])  # H0: diff <= -delta
    upper = _t_cdf((res["mean_diff"] - delta) / res["se"], res["df"])  # H0: diff >= +delta
    return max(lower, upper)


def mean_interval(y: np.ndarray, confidence: float = 0.95) -> dict:
    """An arm's grand mean over seeds and samples, with its interval under the same crossed model.

    ``y`` ``[a, n]`` (NaN samples left out). The grand mean's variance is
    ``sigma_u^2 / n + sigma_b^2 / a + sigma_e^2 / (a n)``, estimated without bias by
    ``(MS_seed + MS_sample - MS_res) / (a n)`` (truncated at 0), with Satterthwaite's degrees of
    freedom; with one seed, the sample mean's t interval.

    Returns:
        ``mean, se, df, ci_low, ci_high, n, seeds``.
    """
    y = _finite_columns(np.atleast_2d(np.asarray(y, dtype=float)))
    a, n = y.shape
    mean = float(y.mean()) if y.size else math.nan
    out = {"mean": mean, "n": int(n), "seeds": int(a)}
    if n < 2:
        return {**out, "se": math.nan, "df": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    if a == 1:
        parts = [(1.0, float(np.var(y[0], ddof=1)), n - 1)]
    else:
        ms_seed, ms_sample, ms_res = _two_way_mean_squares(y)
        parts = [(1.0, ms_sample, n - 1), (1.0, ms_seed, a - 1), (-1.0, ms_res, (a - 1) * (n - 1))]
    var = max(sum(k * m for k, m, _ in parts), 0.0) / (a * n)
    if var == 0:
        return {**out, "se": 0.0, "df": math.inf, "ci_low": mean, "ci_high": mean}
    df = (var * a * n) ** 2 / sum((k * m) ** 2 / f for k, m, f in parts if f > 0)
    se = math.sqrt(var)
    half = _t_ppf(0.5 + confidence / 2, df) * se
    return {**out, "se": se, "df": float(df), "ci_low": mean - half, "ci_high": mean + half}
