"""Several training processes (``torchrun --nproc_per_node=N fwi-attn train ...``).

:func:`torchrun_ranks` reads torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
:func:`distributed` joins the process group (NCCL on CUDA, each rank on ``cuda:LOCAL_RANK``;
gloo on CPU) and leaves it at the end, error included; :func:`wrap_for_ranks` puts the network in
:class:`~torch.nn.parallel.DistributedDataParallel`; :func:`train_sampler` deals each global batch
of the one-process run out across the ranks; :func:`sum_over_ranks` and :func:`broadcast_buffers`
keep the ranks' metrics and BatchNorm statistics in step. In one process every function is a
no-op or the identity.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import nn

from fwi_attn.learn.runtime import TrainError, shuffle_seed


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun launch; one process: rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files and log."""
        return self.rank == 0


def torchrun_ranks(environ=None) -> Ranks:
    """The ranks torchrun set in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    env = os.environ if environ is None else environ
    try:
        world_size = int(env.get("WORLD_SIZE", "1") or 1)
        if world_size <= 1:
            return Ranks()
        return Ranks(int(env["RANK"]), world_size, int(env.get("LOCAL_RANK", env["RANK"])))
    except (KeyError, ValueError):
        raise TrainError("WORLD_SIZE, RANK or LOCAL_RANK is missing or not an integer: launch several "
                         "processes with torchrun, or unset WORLD_SIZE for one") from None


@contextlib.contextmanager
def distributed(ranks: Ranks, device: torch.device):
    """Join the process group of ``ranks`` (:func:`torchrun_ranks`), if several; yield the device
    this process trains on.

    NCCL on CUDA, where each rank trains on ``cuda:LOCAL_RANK``; gloo on CPU. The group (made
    here, not one a caller made already) is destroyed on the way out, error included; on a
    normal exit the ranks meet at a barrier first.
    """
    if ranks.world_size == 1:
        yield device
        return
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    made = not dist.is_initialized()
    if made:
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank,
                                world_size=ranks.world_size, **kwargs)
    try:
        yield device
        # Leave together: no rank's exit (or next job step) runs ahead of rank 0's last write.
        dist.barrier()
    finally:
        if made and dist.is_initialized():
            dist.destroy_process_group()


def sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """``values`` summed over every rank of the process group (float64); unchanged in one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)  # NCCL reduces device tensors only
    dist.all_reduce(t)
    return t.tolist()


def wrap_for_ranks(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """``model`` itself in one process; else ``DistributedDataParallel`` around it, with
    BatchNorm made :class:`~torch.nn.SyncBatchNorm` on CUDA (global-batch statistics; torch's
    runs on GPUs only). The conversion swaps modules in place, so ``model`` keeps its
    variant, config and state-dict keys."""
    if ranks.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: each rank's own batch
    share updates them after DDP's last broadcast, and rank 0's are the ones saved."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def train_sampler(dataset, seed: int, ranks: Ranks):
    """The training order: DistributedSampler over ``ranks`` (one process: rank 0 of 1) seeded with
    :func:`shuffle_seed`; call ``set_epoch`` each epoch. Rank ``r`` takes every ``world_size``-th
    sample of one permutation, so per-rank batches of ``batch_size / world_size`` together make
    the one-process run's batches of ``batch_size`` (exactly when the split is a multiple of the
    global batch; otherwise the last batch of an epoch is padded from its start)."""
    from torch.utils.data import DistributedSampler

    return DistributedSampler(dataset, num_replicas=ranks.world_size, rank=ranks.rank, shuffle=True,
                              seed=shuffle_seed(seed), drop_last=False)

