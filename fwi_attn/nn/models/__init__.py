"""Model registry, checkpoints and cost counting.

Registry names are the study's variants: ``none, se, cbam, ca, psa, mask, mask_hard`` (UNet with that
attention at the bottleneck and after each decoder concatenation, or at the ``attn_levels``
coarsest of those levels; ``mask`` and ``mask_hard``, its straight-through binary mask, at no more
than the two coarsest), ``gate`` (UNet with attention gates on the skips), ``m2f`` (UNet with
Mask2Former masked attention at its decoder levels, guided by the salt the coarser level
predicted; it always has salt heads), ``mixformer`` (the UNet's encoder with U-MixFormer's
mix-attention decoder) and ``inversionnet`` (OpenFWI's baseline); and two controls that isolate
attention (:data:`CONTROLS`): ``none_salt`` (the plain UNet with m2f's salt heads and salt loss) and
``none_wide`` (the plain UNet, trained at a width that matches a larger variant's parameter count). Every model takes the input and output sizes ``in_shots, nt, n_receivers, nz, nx``
and maps gathers ``[B, in_shots, nt, n_receivers]`` to ``[B, 1, nz, nx]`` on the normalised
[-1, 1] velocity scale; it keeps its constructor arguments in ``model.config`` and its registry
name in ``model.variant``, which is what a checkpoint stores.

``model(x, salt=True)`` returns ``(velocity, salt_logits)``: the salt heads' logits on the
velocity grid ``[B, 1, nz, nx]``, coarse to fine; an empty list for a model without salt heads
(InversionNet, or a UNet built with ``salt_heads=False``). ``model.needs_salt_supervision`` is
True where the heads steer attention (m2f), so that training must supervise them.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from fwi_attn.catalogue import CONTROLS

from .inversionnet import InversionNet
from .mixformer import UMixFormer
from .unet import UNet

__all__ = [
    "CONTROLS",
    "CheckpointError",
    "InversionNet",
    "OPENFWI_SHAPE",
    "UMixFormer",
    "UNet",
    "count_macs",
    "count_params",
    "create_model",
    "list_models",
    "load_model",
    "model_kwargs",
    "save_checkpoint",
]

#: OpenFWI's sizes: 5 shots x 1000 steps x 70 receivers -> 70 x 70 cells.
OPENFWI_SHAPE = dict(in_shots=5, nt=1000, n_receivers=70, nz=70, nx=70)


@dataclasses.dataclass(frozen=True)
class _Variant:
    builder: type[nn.Module]
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # what the name means
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # overridable
    caps: Mapping[str, int] = dataclasses.field(default_factory=dict)  # upper bounds (None: the cap)
    salt_supervised: bool = False  # trained with m2f's salt loss although no attention follows the heads


def _unet(attn: str, gates: bool = False, caps: Mapping[str, int] | None = None, **defaults: Any) -> _Variant:
    return _Variant(UNet, {"attn": attn, "gates": gates}, defaults, caps or {})


# The study's attention sits at the bottleneck and after each decoder concatenation
# (segmentation_models_pytorch's placement). Adding the encoder points costs CBAM 1.3x the plain
# UNet's training time on CPU against 1.2x without (docs/benchmarks.md); pass
# attn_points=("encoder", "bottleneck", "decoder") to use them.
_POINTS = ("bottleneck", "decoder")

_VARIANTS: dict[str, _Variant] = {
    "none": _unet("none"),
    "se": _unet("se", attn_points=_POINTS),
    "cbam": _unet("cbam", attn_points=_POINTS),
    "ca": _unet("ca", attn_points=_POINTS),
    "psa": _unet("psa", attn_points=_POINTS),
    # (H*W)^2 attention: at most the bottleneck and the lowest decoder level.
    "mask": _unet("mask", attn_points=_POINTS, caps={"attn_levels": 2}),
    "mask_hard": _unet("mask_hard", attn_points=_POINTS, caps={"attn_levels": 2}),
    "gate": _unet("none", gates=True),
    # Masked attention needs a coarser level's salt prediction, so it sits at decoder levels only.
    "m2f": _Variant(UNet, {"attn": "m2f", "gates": False, "attn_points": ("decoder",), "salt_heads": True}),
    "mixformer": _Variant(UMixFormer),
    "inversionnet": _Variant(InversionNet),
    # Controls of the confirmation stage (docs/study.md): the plain UNet with m2f's salt heads and
    # salt loss, and the plain UNet at the width (``--width``) that gives it the parameter count
    # of the attention variant it is compared with.
    "none_salt": _Variant(UNet, {"attn": "none", "gates": False, "salt_heads": True}, salt_supervised=True),
    "none_wide": _unet("none"),
}


def list_models() -> list[str]:
    """Registered variant names, in registry order."""
    return list(_VARIANTS)


def _accepted(builder: type[nn.Module]) -> set[str]:
    return set(inspect.signature(builder).parameters)


def model_kwargs() -> set[str]:
    """Every keyword some registered model accepts (the keys a config's ``model`` section may hold)."""
    return set().union(*(_accepted(v.builder) for v in _VARIANTS.values()))


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered variant ``name``.

    Args:
        name: one of :func:`list_models`.
        **kwargs: ``in_shots, nt, n_receivers, nz, nx`` (InversionNet defaults to OpenFWI's) and
            hyper-parameters. A study's ``model`` section is shared by all its variants, so a key
            that only another variant understands (``depth`` for InversionNet, ``width_mult`` for
            a UNet) is ignored; a key no variant understands is an error, as is contradicting
            what the name fixes (``attn``, ``gates``). A key the variant caps (``mask``'s
            ``attn_levels``) is lowered to the cap.

    Returns:
        The model, with ``model.variant = name`` and ``model.config`` its constructor kwargs.

    Raises:
        ValueError: unknown name (listing the valid ones) or a contradiction with the name.
        TypeError: a keyword no registered model accepts.
    """
    try:
        variant = _VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(_VARIANTS)}") from None
    unknown = sorted(set(kwargs) - model_kwargs())
    if unknown:
        raise TypeError(f"unknown model argument(s) {unknown}; valid: {', '.join(sorted(model_kwargs()))}")
    for key, value in variant.fixed.items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"model {name!r} fixes {key}={value!r}; got {key}={kwargs[key]!r}")
    accepted = _accepted(variant.builder)
    merged = {**variant.defaults, **{k: v for k, v in kwargs.items() if k in accepted}, **variant.fixed}
    for key, cap in variant.caps.items():
        merged[key] = cap if merged.get(key) is None else min(merged[key], cap)
    model = variant.builder(**merged)
    model.variant = name
    if variant.salt_supervised:
        model.needs_salt_supervision = True
    return model


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_macs(model: nn.Module, input_shape: tuple[int, ...] | torch.Size) -> int:
    """Multiply-accumulates of one forward pass on an input of ``input_shape`` (batch included).

    Counts convolutions (transposed too), linear layers, matmuls and attention (``Q K^T`` and
    ``A V``) through :class:`torch.utils.flop_counter.FlopCounterMode` (FLOPs / 2); element-wise
    work (activations, norms, sigmoid gating) is not counted. Runs in eval mode under
    ``no_grad`` so BatchNorm statistics are untouched; a model on the ``meta`` device is
    counted without computing anything.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    # PyTorch's table lacks the CPU flash kernel, which SDPA uses on CPU tensors.
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}
    try:
        model.eval()
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            model(torch.zeros(tuple(input_shape), device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


class CheckpointError(ValueError):
    """A checkpoint file is missing pieces, unreadable, or does not fit the model it names."""


_RESERVED = ("name", "kwargs", "state_dict")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra: Any) -> Path:
    """Write ``{"name", "kwargs", "state_dict", **extra}`` to ``path`` atomically.

    The file is written to a temporary file of its own beside ``path``
    (:func:`fwi_attn.io.files.atomic_path`), then renamed over it, so a crash never leaves a
    truncated checkpoint and two writers never share a temporary file. ``extra`` must hold only what
    ``torch.load(weights_only=True)`` reads back: tensors, numbers, strings, lists, tuples, dicts.
    A ``torch.compile`` wrapper is saved as the model it wraps.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    model = getattr(model, "_orig_mod", model)
    name, config = getattr(model, "variant", None), getattr(model, "config", None)
    if name is None or config is None:
        raise ValueError(
            f"{type(model).__name__} has no variant name or config: build it with create_model() to checkpoint it"
        )
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise ValueError(f"extra keys {clash} would overwrite the checkpoint's own {list(_RESERVED)}")
    payload = {
        "name": name,
        "kwargs": dict(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    from fwi_attn.io.files import atomic_path

    with atomic_path(path, suffix=".pt.tmp") as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _state_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor], limit: int = 8) -> str:
    own = model.state_dict()
    lines = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        lines.append(f"missing from checkpoint: {missing[:limit]}{' ...' if len(missing) > limit else ''}")
    if unexpected:
        lines.append(f"not in model: {unexpected[:limit]}{' ...' if len(unexpected) > limit else ''}")
    shown = lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])
    return "; ".join(shown)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved by :func:`save_checkpoint`.

    Returns:
        ``(model, extra)``: the model built by ``create_model(name, **kwargs)`` with the saved
        weights, in eval mode, and every other key of the file.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: unreadable file, missing keys, unknown variant, or weights that do not
            fit the variant (the message names the file, the variant and the shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises pickle, zip, EOF and runtime errors for corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in _RESERVED):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: a checkpoint needs keys {list(_RESERVED)}, found {found}")
    name, kwargs, state = ckpt["name"], ckpt["kwargs"], ckpt["state_dict"]
    try:
        model = create_model(name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild model {name!r}: {exc}") from exc
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: weights do not fit variant {name!r} built with {kwargs}: {_state_mismatch(model, state)}"
        ) from exc
    model.eval()
    return model, {k: v for k, v in ckpt.items() if k not in _RESERVED}


def section_dict(section: Any) -> dict[str, Any]:
    """A config section (a Section, mapping, dataclass or plain object; None: empty) as a plain dict."""
    if section is None:
        return {}
    if isinstance(section, Mapping):
        return dict(section)
    if dataclasses.is_dataclass(section):
        return dataclasses.asdict(section)
    return dict(vars(section))
