"""One look for every figure: the paper style, the variants' colours, and how a figure is saved.

A figure is drawn once and written in each format of ``figures.formats`` (PNG, and PDF/SVG as
vector where the figure allows: images drawn with imshow stay raster inside the PDF), at the
width of ``figures.width`` (3.5 in for one column of a two-column paper, 7.1 in across both),
with fonts of 8-9 pt that stay readable at that width. Each file carries its provenance in its
metadata (the code's commit, the config's hash), so a figure in a thesis can be traced to the
run that drew it.

Colours: one fixed colour per variant (:func:`variant_color`), from colour-blind-safe palettes
(Okabe-Ito, then Paul Tol's muted), so a variant looks the same in every figure.
"""
from __future__ import annotations

import contextlib
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.layout_engine import ConstrainedLayoutEngine

from fwi_attn.io.files import atomic_path

DPI = 150
VELOCITY_CMAP = "turbo"
GATHER_CMAP = "gray"
ERROR_CMAP = "RdBu_r"
ATTENTION_CMAP = "magma"
# Cyan, not white: visible on magma's light end too (an m2f mask that attends everywhere is all 1).
SALT_OUTLINE_COLOR = "cyan"

#: Okabe & Ito (2008): eight colours distinguishable under the common colour-vision deficiencies.
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
#: Paul Tol's muted scheme (https://personal.sron.nl/~pault/): nine more, also colour-blind safe.
TOL_MUTED = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499")

#: The registered variants' colours. The plain UNet is Okabe-Ito's blue and its controls Tol's
#: indigo and light blue beside it; black is the mean-model baseline's alone.
VARIANT_COLORS = {
    "none": OKABE_ITO[5], "se": OKABE_ITO[1], "cbam": OKABE_ITO[3], "ca": OKABE_ITO[6], "psa": OKABE_ITO[7],
    "mask": TOL_MUTED[4], "gate": TOL_MUTED[6], "inversionnet": "#777777", "m2f": TOL_MUTED[7],
    "mixformer": TOL_MUTED[2], "mask_hard": TOL_MUTED[5],
    "none_salt": OKABE_ITO[2], "none_wide": TOL_MUTED[0],
}
BASELINE_COLOR = "black"
#: Unregistered (user) variants: a stable pick, by a hash of the name, among colours no
#: registered variant uses.
EXTRA_COLORS = tuple(c for c in (*OKABE_ITO, *TOL_MUTED) if c not in VARIANT_COLORS.values() and c != "#000000")

#: Column widths of a two-column paper, in inches.
WIDTHS = {"single": 3.5, "double": 7.1}

#: Fonts and lines for print at :data:`WIDTHS`: 8 pt text, 9 pt titles.
STYLE = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "figure.titlesize": 9, "lines.linewidth": 1.2, "lines.markersize": 4,
    "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "grid.linewidth": 0.5,
    "savefig.dpi": DPI, "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none",
    "axes.prop_cycle": matplotlib.cycler(color=list(OKABE_ITO[1:]) + list(TOL_MUTED)),
}
matplotlib.rcParams.update(STYLE)


def variant_color(variant: str):
    """The fixed colour of a variant (:data:`VARIANT_COLORS`; black for the mean baseline; a user
    model's from :data:`EXTRA_COLORS`, chosen by a stable hash of its name)."""
    if variant == "mean":
        return BASELINE_COLOR
    if variant in VARIANT_COLORS:
        return VARIANT_COLORS[variant]
    return EXTRA_COLORS[zlib.crc32(variant.encode()) % len(EXTRA_COLORS)]


FORMATS = ("png", "pdf", "svg")


@dataclass(frozen=True)
class FigureSettings:
    """How figures are written: ``formats`` (the first is the path's own suffix, the others are
    written beside it with the same stem), ``width`` in inches (None: as drawn) and the
    ``metadata`` each file carries (provenance)."""

    formats: tuple[str, ...] = ("png",)
    width: float | None = None
    metadata: dict = field(default_factory=dict)


SETTINGS = [FigureSettings()]


def settings_from_config(config: dict) -> FigureSettings:
    """The ``figures`` section of a resolved config (a dict) as :class:`FigureSettings`, with the
    provenance of the code and that config as metadata."""
    from fwi_attn.provenance import config_hash, git_state

    section = dict(config.get("figures") or {})
    formats = tuple(section.get("formats") or ("png", "pdf"))
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"figures.formats: {bad} not among {list(FORMATS)}; fix the config")
    width = section.get("width", "double")
    width = WIDTHS.get(width, width) if width is not None else None
    git = git_state()
    commit = git["commit"] or "unknown"
    dirty = " (uncommitted changes)" if git["dirty"] else ""
    metadata = {"Creator": "fwi-attn", "Source": f"fwi-attn commit {commit}{dirty}",
                "Keywords": f"commit={commit} dirty={git['dirty']} config_sha256={config_hash(config)}"}
    return FigureSettings(formats, None if width is None else float(width), metadata)


@contextlib.contextmanager
def figure_settings(config_or_settings):
    """Write every figure saved inside the block with these settings (a config, its dict, or a
    :class:`FigureSettings`)."""
    s = config_or_settings
    if not isinstance(s, FigureSettings):
        s = settings_from_config(s.to_dict() if hasattr(s, "to_dict") else s)
    SETTINGS.append(s)
    try:
        yield s
    finally:
        SETTINGS.pop()


def format_paths(path: str | os.PathLike, formats: tuple[str, ...] | None = None) -> list[Path]:
    """The files a figure saved to ``path`` becomes: ``path`` itself, then its stem with each other format."""
    path = Path(path)
    formats = SETTINGS[-1].formats if formats is None else formats
    others = [f for f in formats if "." + f != path.suffix]
    return [path, *(path.with_suffix("." + f) for f in others)]


def file_metadata(fmt: str, metadata: dict, title: str = "") -> dict:
    """``savefig(metadata=...)`` for one format: PNG takes free text keys, PDF and SVG their own."""
    if not metadata:
        return {}
    if fmt == "png":
        return {**metadata, **({"Title": title} if title else {})}
    if fmt == "pdf":
        return {"Creator": metadata.get("Creator", ""), "Subject": metadata.get("Source", ""),
                "Keywords": metadata.get("Keywords", ""), **({"Title": title} if title else {})}
    return {"Creator": metadata.get("Creator", ""), "Description": metadata.get("Source", ""),
            "Keywords": metadata.get("Keywords", ""), **({"Title": title} if title else {})}


def resize(fig, width: float | None) -> None:
    """Scale ``fig`` to ``width`` inches keeping its aspect; fonts keep their point size."""
    if width is None:
        return
    w, h = fig.get_size_inches()
    if abs(w - width) > 1e-3:
        fig.set_size_inches(width, h * width / w)


def save_figure(fig, path: str | os.PathLike) -> list[Path]:
    """Save ``fig`` atomically in every configured format (``path`` first) and close it.

    A constrained layout already fits everything inside the figure; ``bbox_inches="tight"``
    would draw it a second time (about a second per figure).

    Returns:
        The files written.
    """
    s = SETTINGS[-1]
    resize(fig, s.width)
    constrained = isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    written = []
    title = " ".join(fig.get_suptitle().split())
    for out in format_paths(path, s.formats):
        fmt = out.suffix[1:]
        with atomic_path(out, suffix=out.suffix) as tmp:
            fig.savefig(tmp, dpi=DPI, bbox_inches=None if constrained else "tight", format=fmt,
                        metadata=file_metadata(fmt, s.metadata, title) or None)
        written.append(out)
    plt.close(fig)
    return written


def finish(fig, out):
    """Save ``fig`` to ``out`` (and close it), or return it when ``out`` is None (notebooks)."""
    if out is None:
        return fig
    save_figure(fig, out)
    return None


def figure_png(fig) -> bytes:
    """A figure as PNG bytes at the figures' resolution, closing it (for notebooks and tests)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, bbox_inches="tight", format="png")
    plt.close(fig)
    return buf.getvalue()
