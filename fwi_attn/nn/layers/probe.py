"""Attention-map capture: one probe type, one context manager.

Every attention module that has a spatial weight map passes it through an :class:`AttnProbe`
(an ``nn.Identity``), so figures can show where each variant looks without the modules knowing
about figures. :func:`capture_attention` hooks every probe in a model for the duration of a
``with`` block and collects the maps, detached, keyed by the path of the attention module that
owns the probe. The UNets' salt heads pass their predicted salt probability through one too
(``salt_heads.<level>``): beside m2f's masks it shows the prediction each mask was cut from.

Maps are ``[B, 1, H, W]`` at the resolution of the feature map the module saw (inside a UNet that
is the padded grid of that level, not the velocity model's ``[nz, nx]``).

Example::

    with capture_attention(model) as maps:
        model(x)
    maps["encoder.0.attn"]  # [B, 1, H, W]
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class AttnProbe(nn.Identity):
    """Identity on a spatial attention map ``[B, 1, H, W]``; :func:`capture_attention` hooks it.

    ``active`` is True only inside :func:`capture_attention`; modules whose map costs extra work
    to form (coordinate attention reduces ``a_h * a_w`` over channels) check it first so that
    training pays nothing for a map nobody reads.
    """

    def __init__(self) -> None:
        super().__init__()
        self.active = False


def _owner_path(probe_path: str) -> str:
    # The probe is an implementation detail: key maps by the attention module that owns it.
    owner, _, _ = probe_path.rpartition(".")
    return owner or probe_path


@contextlib.contextmanager
def capture_attention(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Collect every probed attention map produced while the block runs.

    Args:
        model: any module; every :class:`AttnProbe` inside it is hooked.

    Yields:
        A dict, filled as forward passes run, mapping the owning module's path (for example
        ``"bottleneck.attn"``, ``"gates.1"``) to its map, detached, ``[B, 1, H, W]``. When a
        module runs twice inside the block, the later map replaces the earlier one.
    """
    maps: dict[str, torch.Tensor] = {}
    handles = []
    probes = [(name, m) for name, m in model.named_modules() if isinstance(m, AttnProbe)]

    def make_hook(key: str):
        def hook(_module, _inputs, output):
            maps[key] = output.detach()
        return hook

    try:
        for name, probe in probes:
            probe.active = True
            handles.append(probe.register_forward_hook(make_hook(_owner_path(name))))
        yield maps
    finally:
        for handle in handles:
            handle.remove()
        for _, probe in probes:
            probe.active = False
