"""``attention.h5`` (schema ``fwi-attn-attention/1``): a network's spatial attention maps on one
test sample (the showcase, :func:`fwi_attn.learn.evaluate.showcase_index`), that sample's index and
true velocity, written by ``fwi-attn evaluate --checkpoint`` so that the comparison figures draw the
maps without loading a network. Layout: :class:`Attention`; checksums of :mod:`fwi_attn.io.hdf5`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fwi_attn.io.files import write_sealed_h5
from fwi_attn.io.hdf5 import open_result, verify_data
from fwi_attn.layout import RUN

ATTENTION_SCHEMA = "fwi-attn-attention/1"
WRITER = f"`fwi-attn evaluate --checkpoint DIR/{RUN.model} --out DIR`"


class AttentionError(ValueError):
    """An ``attention.h5`` is unreadable, of another schema or inconsistent."""


@dataclass
class Attention:
    """Contents of an ``attention.h5`` (schema ``fwi-attn-attention/1``).

    Attributes:
        index: the sample's index within the split (counting through its shards in order).
        velocity: its true model float32 ``[nz, nx]`` in m/s.
        maps: ``{module path: float32 [h, w]}`` in forward order, values in [0, 1], each on its
            level's resolution of the network's padded grid: the attention maps and, for a
            network with salt heads (m2f, or any UNet under ``train.salt_aux_weight``), each
            level's predicted salt probability (``salt_heads.<level>``); empty for a network
            without either.
        pad: ``(left, right, top, bottom)`` cells the network pads the grid by (crop the maps by
            this much for the model's extent).
        attrs: the file's attributes (``variant``, ``seed``, ``dataset``, ``split``, ``checkpoint``, ...).
    """

    path: Path
    index: int
    velocity: np.ndarray
    maps: dict[str, np.ndarray]
    pad: tuple[int, int, int, int]
    attrs: dict


def write_attention(path: str | os.PathLike, maps: dict[str, np.ndarray], *, velocity: np.ndarray, index: int,
                    pad: tuple[int, int, int, int], variant: str, seed: int | None, dataset: str, split: str,
                    checkpoint: str, salt_threshold: float) -> Path:
    """Write an ``attention.h5`` atomically (layout: :class:`Attention`).

    Args:
        maps: ``{module path: [h, w]}`` in forward order (of one sample:
            :meth:`fwi_attn.learn.inference.Predictor.attention`).
        velocity: the sample's true model ``[nz, nx]`` (m/s).
        index: its index within ``split``; ``salt_threshold``: the threshold that chose it.
    """
    attrs = {"schema": ATTENTION_SCHEMA, "variant": variant, "seed": -1 if seed is None else int(seed),
             "dataset": dataset, "split": split, "checkpoint": str(checkpoint), "index": int(index),
             "pad": json.dumps([int(p) for p in pad]), "names": json.dumps(list(maps)),
             "salt_threshold": float(salt_threshold)}
    path = Path(path)
    # Module paths ("bottleneck.attn", "gates.1") are valid HDF5 names; the order is in "names".
    arrays = {"velocity": np.asarray(velocity, dtype=np.float32),
              **{f"maps/{key}": np.asarray(amap, dtype=np.float32) for key, amap in maps.items()}}
    # "maps" is present even when the network has no spatial maps.
    return write_sealed_h5(path, arrays, attrs, groups=("maps",))


def read_attention(path: str | os.PathLike) -> Attention:
    """Read and check an ``attention.h5``.

    Raises:
        FileNotFoundError: no such file.
        AttentionError: not readable, another schema, missing pieces or maps that are not 2-D.
    """
    path = Path(path)
    fix = "rerun `fwi-attn evaluate --checkpoint` for this run"
    with open_result(path, ATTENTION_SCHEMA, error=AttentionError, what="attention file",
                     writer=WRITER) as (f, attrs):
        missing = [k for k in ("index", "pad", "names") if k not in attrs]
        missing += [k for k in ("velocity", "maps") if k not in f]
        if missing:
            raise AttentionError(f"{path}: missing {', '.join(missing)}; {fix}")
        try:
            names, pad = json.loads(attrs["names"]), json.loads(attrs["pad"])
        except (TypeError, ValueError):
            raise AttentionError(f"{path}: attributes 'names' and 'pad' must be JSON lists; {fix}") from None
        absent = [n for n in names if n not in f["maps"]]
        if absent or len(pad) != 4:
            what = f"maps {', '.join(absent)} named but not stored" if absent else f"pad {pad} is not 4 numbers"
            raise AttentionError(f"{path}: {what}; {fix}")
        raw = {"velocity": f["velocity"][()], **{f"maps/{n}": f["maps"][n][()] for n in names}}
        verify_data(f, path, writer=WRITER, arrays=raw)
        velocity = raw["velocity"].astype(np.float32)
        maps = {n: raw[f"maps/{n}"].astype(np.float32) for n in names}
    bad = [n for n, m in maps.items() if m.ndim != 2]
    if velocity.ndim != 2 or bad:
        raise AttentionError(f"{path}: velocity {list(velocity.shape)} and every map must be 2-D"
                            f"{' (not ' + ', '.join(bad) + ')' if bad else ''}; {fix}")
    return Attention(path=path, index=int(attrs["index"]), velocity=velocity, maps=maps,
                     pad=tuple(int(p) for p in pad), attrs=attrs)
