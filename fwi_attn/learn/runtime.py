"""Process-wide settings of a training run: determinism, seeds, bf16 autocast, and the error type.

Every function here touches global state (torch's determinism flags, the global RNGs) or asks
the hardware (bf16 support); :mod:`fwi_attn.learn.train` composes them.
"""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


class TrainError(ValueError):
    """Training cannot start or continue: bad variant, mismatched resume, diverged loss."""


@contextlib.contextmanager
def torch_settings(deterministic: bool, device: torch.device):
    """Set torch's determinism (and cuDNN autotuning) for a run; restore both afterwards.

    Both are process-wide, so a caller (a test, a notebook) gets its own settings back. The thread
    count is the process's: the command line sets ``study.threads`` (``fwi_attn.cli.set_threads``).
    """
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_bench = torch.backends.cudnn.benchmark
    change_det = deterministic != old_det or (deterministic and not old_warn)
    try:
        if deterministic and device.type == "cuda":
            # cuBLAS needs this before its first call to be deterministic.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: an op without a deterministic kernel (some CUDA backward passes) warns
        # instead of stopping the run. Only called on a change: the call imports
        # torch._inductor (~1 s), which a short evaluation job would otherwise pay for nothing.
        if change_det:
            torch.use_deterministic_algorithms(deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = not deterministic
        yield
    finally:
        if change_det:
            torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.backends.cudnn.benchmark = old_bench


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def shuffle_seed(seed: int) -> int:
    """The training sampler's seed for a run with ``seed``; epoch ``e`` is shuffled with
    ``shuffle_seed(seed) + e`` (DistributedSampler's rule). Hashed so that run seeds ``k`` and
    ``k + 1`` do not see the same orders one epoch apart."""
    return int(np.random.SeedSequence([seed, 0x5A3F]).generate_state(1)[0])


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast pays on ``device``: CUDA with bf16, or a CPU with native bf16
    instructions (AVX512-BF16 or AMX; elsewhere bf16 is emulated and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(getattr(torch.cpu, name, lambda: False)()
                   for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on ``device`` when ``bf16`` (see :func:`bf16_supported`), else a no-op context."""
    if bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()

