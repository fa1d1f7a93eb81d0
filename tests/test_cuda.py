"""The CUDA paths: simulation and training on a GPU against the CPU. Skipped without CUDA;
``pytest -m cuda`` (and ``make gpu-check``) runs these, with the other ``cuda``-marked tests."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_cuda_simulation_matches_the_cpu(tiny_dataset, tmp_path):
    """The same shard simulated on the GPU: the same models, gathers within float32 rounding
    of the CPU's (different summation orders in the stencil)."""
    from fwi_attn.data.simulate import generate_shard
    from fwi_attn.io.shard import read_shard

    cpu = read_shard(tiny_dataset["shards"]["test"][0])
    out = generate_shard(tiny_dataset["config"], "salt", "test", 0, tmp_path / "gpu.h5", device="cuda")
    gpu = read_shard(out)
    np.testing.assert_array_equal(gpu.velocity, cpu.velocity)
    diff = np.linalg.norm(gpu.gathers.astype(np.float64) - cpu.gathers) / np.linalg.norm(cpu.gathers.astype(np.float64))
    assert diff < 1e-3, diff


@pytest.mark.parametrize("compile_model", [False, True], ids=["eager", "compile"])
def test_cuda_training_with_bf16_and_channels_last(tiny_dataset, tmp_path, compile_model):
    """``fwi-attn train`` on the GPU as the paper preset runs it (bf16 autocast, channels_last,
    optionally torch.compile): finite losses, a checkpoint that loads on the CPU and predicts
    what the GPU validated, and a validation MAE near the CPU run's in fp32."""
    from fwi_attn.config import load_config
    from fwi_attn.data.dataset import ShardDataset
    from fwi_attn.data.normalize import Normalizer
    from fwi_attn.data.sources import split_sources
    from fwi_attn.io.stats import load_stats
    from fwi_attn.layout import default_stats_path
    from fwi_attn.learn.train import make_loader, train, validate
    from fwi_attn.nn.models import load_model

    raw = tiny_dataset["config"].to_dict()
    raw["train"].update(bf16=False)
    cpu = train(load_config(raw), "none", 0, tmp_path / "cpu", progress=False, log=lambda s: None)
    raw["study"]["device"] = "cuda"
    raw["train"].update(bf16=True, channels_last=True, compile=compile_model)
    cfg = load_config(raw)
    gpu = train(cfg, "none", 0, tmp_path / "gpu", progress=False, log=lambda s: None)
    assert gpu.finished and all(np.isfinite(r["train_loss"]) for r in gpu.history)
    assert gpu.history[-1]["val_mae"] == pytest.approx(cpu.history[-1]["val_mae"], abs=0.02)
    model, _ = load_model(tmp_path / "gpu" / "model.pt")
    norm = Normalizer.from_stats(load_stats(default_stats_path(cfg)))
    val = validate(model, make_loader(ShardDataset(split_sources(cfg, "val"), norm), 4, shuffle=False),
                   device=torch.device("cpu"))
    # The GPU validated in bf16, the CPU in fp32: close, not equal.
    assert val["mae"] == pytest.approx(gpu.best_val_mae, abs=5e-3)
