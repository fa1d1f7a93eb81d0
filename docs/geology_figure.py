"""Figure and statistics of the salt families (docs/geology.md).

    python docs/geology_figure.py [--preset default] [--n 1000] [--seed 0] [--out docs/figures/geology_salt_draws.png]

Draws ``--n`` models of ``salt`` and of ``salt_blobs`` at the preset's grid and geology, prints
their salt-area fraction, the mean velocity of the top 10 rows and the salt-top depth (salt:
velocity above ``evaluate.salt_threshold``), and saves 24 draws of ``salt`` as a figure.
"""
from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fwi_attn.config import load_config  # noqa: E402
from fwi_attn.data.geology import KIND_CODES, generate_velocity, plan_velocity  # noqa: E402
from fwi_attn.io.files import atomic_path


def statistics(v: np.ndarray, threshold: float, dx: float) -> dict[str, np.ndarray]:
    """Per model: salt-area fraction, mean of the top 10 rows (m/s), salt-top depth (m; NaN: no salt)."""
    salt = v > threshold
    has = salt.any(axis=(1, 2))
    first = np.argmax(salt.any(axis=2), axis=1).astype(float) * dx
    return {"area": salt.mean(axis=(1, 2)), "top10": v[:, :10].mean(axis=(1, 2)),
            "top_m": np.where(has, first, np.nan), "has": has,
            "bottom": salt[:, -1].any(axis=1)}


def describe(name: str, st: dict) -> str:
    q = [5, 25, 50, 75, 95]
    area, top = st["area"], st["top_m"][st["has"]]
    return (f"| {name} | {area.mean():.3f} | {' / '.join(f'{x:.3f}' for x in np.percentile(area, q))} | "
            f"{(~st['has']).mean():.3f} | {st['bottom'].mean():.3f} | {st['top10'].mean():.0f} | "
            f"{' / '.join(f'{x:.0f}' for x in np.percentile(top, q))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/figures/geology_salt_draws.png")
    args = parser.parse_args()
    cfg = load_config(args.preset)
    s, g, thr = cfg.survey, cfg.geology, cfg.evaluate.salt_threshold

    print(f"preset {args.preset}: {s.nz} x {s.nx} cells at {s.dx:g} m, {args.n} draws, seed {args.seed}, "
          f"salt = velocity > {thr:g} m/s\n")
    print("| family | mean salt area | area p5 / p25 / p50 / p75 / p95 | no-salt share | salt at bottom edge "
          "| mean top-10-row velocity (m/s) | salt-top depth p5 / p25 / p50 / p75 / p95 (m) |")
    print("|---|---|---|---|---|---|---|")
    models = {}
    for family in ("salt", "salt_blobs"):
        v = generate_velocity(family, args.n, np.random.default_rng(args.seed), s.nz, s.nx, s.dx, g)
        models[family] = v
        print(describe(family, statistics(v, thr, s.dx)))
    plan = plan_velocity("salt", args.n, np.random.default_rng(args.seed), s.nz, s.nx, s.dx, g)
    kinds = plan["salt_kind"][plan["salt_on"]]
    print("\nsalt bodies by kind: " + ", ".join(f"{k} {(kinds == c).mean():.3f}" for k, c in KIND_CODES.items()))

    v = models["salt"][:24]
    fig, axes = plt.subplots(4, 6, figsize=(13, 9.4), constrained_layout=True)
    extent = (0, s.nx * s.dx, s.nz * s.dx, 0)  # cell edges in m: offset, depth
    kind_names = {c: k for k, c in KIND_CODES.items()}
    for k, ax in enumerate(axes.flat):
        im = ax.imshow(v[k] / 1000, cmap="jet", vmin=g.vmin / 1000, vmax=g.vmax / 1000, extent=extent,
                       aspect="equal", interpolation="nearest")
        drawn = plan["salt_kind"][k][plan["salt_on"][k]]
        ax.set_title(f"draw {k}: " + (", ".join(kind_names[c] for c in drawn) or "no salt"), fontsize=7)
        ax.tick_params(labelsize=6)
        if k % 6 == 0:
            ax.set_ylabel("depth (m)", fontsize=7)
        if k >= 18:
            ax.set_xlabel("offset (m)", fontsize=7)
    fig.colorbar(im, ax=axes, shrink=0.6, label="P-wave velocity (km/s)")
    fig.suptitle(f"geology family 'salt': draws 0-23, preset {args.preset} ({s.nz} x {s.nx} cells at {s.dx:g} m), "
                 f"seed {args.seed}")
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
