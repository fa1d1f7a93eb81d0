"""The compute device a study asks for (``study.device``), resolved without importing torch until asked."""
from __future__ import annotations

import re


def resolve_device(device="auto"):
    """``study.device`` (or a ``torch.device``) -> ``torch.device``.

    ``auto`` is CUDA when available, else CPU; ``cuda`` without a GPU is an error. Lives here, not
    beside the simulator, so that commands which never simulate do not pay deepwave's import.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):
        raise ValueError(f"device {device!r} is not one of auto, cpu, cuda, cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(device)
