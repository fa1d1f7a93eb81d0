"""Attention measured against the salt: ROC AUC of every spatial map as a detector of salt and
of the salt boundary (fwi_attn.learn.evaluate, attention_salt.json) and its figures.

AUCs are checked against a brute-force pair count and against maps whose answer is known;
evaluate runs on the session's tiny dataset (24 x 32 cells, 8 test samples) with small
untrained networks built under a fixed seed.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu

from fwi_attn.data.dataset import ShardDataset
from fwi_attn.data.normalize import Normalizer
from fwi_attn.io.attention import read_attention
from fwi_attn.io.attention_salt import ATTENTION_SALT_FILE, AttentionSaltError, read_attention_salt
from fwi_attn.io.shard import read_shard
from fwi_attn.io.stats import load_stats
from fwi_attn.learn.evaluate import EvaluateError, attention_salt_scores, evaluate_checkpoint, map_on_grid, roc_auc
from fwi_attn.learn.inference import Predictor
from fwi_attn.learn.metrics import boundary
from fwi_attn.nn.models import create_model, save_checkpoint


def _checkpoint(path, tiny_dataset, variant: str = "cbam", seed: int = 0, **hyper):
    """An untrained ``variant`` network (seeded) for the tiny data, saved as a training run saves it."""
    stats = load_stats(tiny_dataset["stats"])
    torch.manual_seed(seed)
    shape = ShardDataset(tiny_dataset["shards"]["test"]).model_shape()
    model = create_model(variant, **shape, width=4, depth=2, **hyper)
    norm = dict(Normalizer.from_stats(stats).to_dict(), transform=stats["gathers"]["transform"])
    return save_checkpoint(path, model, variant=variant, seed=seed, dataset="salt", normalization=norm)


def brute_force_auc(scores, labels) -> float:
    """P(score of a positive > score of a negative) + P(equal) / 2, over every pair."""
    pos, neg = scores[labels], scores[~labels]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


# ----------------------------------------------------------------------------- the AUC


def test_roc_auc_on_known_cases():
    labels = np.array([False, False, True, True])
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 0.0
    assert roc_auc(np.full(4, 0.3), labels) == 0.5  # a constant map knows nothing
    # Pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) lose, (0.8, both) win: 3 of 4.
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), labels) == 0.75
    assert roc_auc(np.array([0.1, 0.4, 0.4, 0.8]), labels) == 0.875  # a tie counts one half
    assert roc_auc(np.ones(3), np.zeros(3, bool)) is None and roc_auc(np.ones(3), np.ones(3, bool)) is None
    with pytest.raises(EvaluateError, match="4 scores for 3 labels"):
        roc_auc(np.ones(4), np.ones(3, bool))


def test_roc_auc_equals_the_pair_count_with_many_ties():
    rng = np.random.default_rng(3)
    for _ in range(5):
        labels = rng.random(300) < 0.3
        scores = np.round(rng.random(300) + 0.4 * labels, 1)  # coarse values: many ties
        assert roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels), abs=1e-12)
        u = mannwhitneyu(scores[labels], scores[~labels]).statistic  # U of the positives
        assert roc_auc(scores, labels) == pytest.approx(u / (labels.sum() * (~labels).sum()), abs=1e-12)


# ----------------------------------------------------------------------------- maps on the grid


def test_map_on_grid_crops_the_padding_and_keeps_full_resolution_maps():
    rng = np.random.default_rng(4)
    pad = (1, 2, 3, 0)  # left, right, top, bottom
    full = rng.random((10 + 3, 12 + 3))
    np.testing.assert_array_equal(map_on_grid(full, pad, 10, 12), full[3:, 1:13])  # stride 1: the map itself
    coarse = np.kron(rng.random((4, 5)), np.ones((4, 3)))  # a 16 x 15 padded grid
    up = map_on_grid(coarse[::4, ::3], (0, 0, 0, 0), 16, 15)
    assert up.shape == (16, 15) and up.min() >= coarse.min() and up.max() <= coarse.max()
    np.testing.assert_allclose(map_on_grid(np.full((4, 4), 0.7), (2, 2, 2, 2), 12, 12), 0.7)


def test_scores_of_maps_with_known_answers():
    """A map that is the true salt (pooled to a coarser level) detects the salt; its complement
    scores 1 - AUC; the boundary mask detects the boundary; a sample without salt gets None."""
    nz, nx, thr = 16, 20, 4200.0
    truth = np.full((2, nz, nx), 2500.0, np.float32)
    truth[0, 4:12, 6:16] = 4500.0  # sample 1 has no salt
    pad = (2, 2, 0, 0)  # padded grid 16 x 24
    salt = np.pad(truth[0] > thr, ((0, 0), (2, 2))).astype(float)
    pooled = salt.reshape(8, 2, 12, 2).mean(axis=(1, 3))  # stride 2, as the network's level 1
    edge = np.pad(boundary(truth[0] > thr), ((0, 0), (2, 2))).astype(float)
    maps = [{"decoder.1.attn": pooled, "gates.1": 1 - pooled, "edge": edge},
            {"decoder.1.attn": np.zeros((8, 12)), "gates.1": np.ones((8, 12)), "edge": np.zeros((16, 24))}]
    scores = attention_salt_scores(maps, truth, pad, thr)
    assert list(scores) == ["decoder.1.attn", "gates.1", "edge"]
    level = scores["decoder.1.attn"]
    assert level["shape"] == [8, 12] and level["stride"] == 2 and level["kind"] == "attention"
    assert level["salt_auc"][0] > 0.97 and level["salt_auc"][1] is None and level["boundary_auc"][1] is None
    assert scores["gates.1"]["salt_auc"][0] == pytest.approx(1 - level["salt_auc"][0])
    assert scores["edge"]["boundary_auc"][0] == 1.0 and scores["edge"]["stride"] == 1
    assert level["mean_salt_auc"] == level["salt_auc"][0]  # the sample without salt is left out
    with pytest.raises(EvaluateError, match="attention maps of 1 samples for 2 true models"):
        attention_salt_scores(maps[:1], truth, pad, thr)


# ----------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("variant, hyper", [("cbam", {}), ("m2f", {}), ("se", {})])
def test_evaluate_writes_attention_salt_for_every_test_sample(variant, hyper, tiny_dataset, tmp_path):
    """attention_salt.json scores each map attention.h5 holds, on every test sample; the showcase
    sample's values are the AUCs of attention.h5's maps; SE (channel attention) records no level."""
    cfg = tiny_dataset["config"]
    ckpt = _checkpoint(tmp_path / "model.pt", tiny_dataset, variant=variant, **hyper)
    out = tmp_path / "eval"
    evaluate_checkpoint(cfg, ckpt, out, progress=False)
    data = read_attention_salt(out / ATTENTION_SALT_FILE)
    att = read_attention(out / "attention.h5")
    truth = np.concatenate([read_shard(p).velocity for p in tiny_dataset["shards"]["test"]])
    assert data["variant"] == variant and data["seed"] == 0 and data["n_samples"] == len(truth) == 8
    assert data["indices"] == list(range(8)) and data["salt_threshold"] == cfg.evaluate.salt_threshold
    assert list(data["levels"]) == list(att.maps)
    if variant == "se":
        assert data["levels"] == {} and data["spatial"] is False and "no spatial attention map" in data["note"]
        return
    has_salt = (truth > cfg.evaluate.salt_threshold).any(axis=(1, 2))
    assert has_salt.any() and not has_salt.all()  # the tiny test split has both kinds of sample
    for key, level in data["levels"].items():
        assert len(level["salt_auc"]) == len(level["boundary_auc"]) == 8
        for auc, salt in zip(level["salt_auc"], has_salt):
            assert (auc is None) == (not salt) and (auc is None or 0 <= auc <= 1)
        on_grid = map_on_grid(att.maps[key], att.pad, *truth.shape[1:])
        want = roc_auc(on_grid, truth[att.index] > cfg.evaluate.salt_threshold)
        assert level["salt_auc"][att.index] == pytest.approx(want, abs=1e-12), key
    if variant == "m2f":
        kinds = {k: v["kind"] for k, v in data["levels"].items()}
        assert kinds["salt_heads.1"] == "salt_head" and kinds["decoder.0.guide"] == "attention"
    # One map per sample, as Predictor.attention gives it (with evaluate's memory format).
    predictor = Predictor.load(ckpt, device="cpu", channels_last=bool(cfg.train.channels_last))
    gathers = ShardDataset(tiny_dataset["shards"]["test"]).read(5)[0]
    again = attention_salt_scores(predictor.attention(np.array(gathers)[None]), truth[5:6], predictor.pad,
                                  cfg.evaluate.salt_threshold)
    for key, level in again.items():
        assert level["salt_auc"][0] == pytest.approx(data["levels"][key]["salt_auc"][5], abs=1e-6)


def test_attention_salt_reader_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="fwi-attn evaluate"):
        read_attention_salt(tmp_path / ATTENTION_SALT_FILE)
    (tmp_path / "a.json").write_text(json.dumps({"schema": "other/1"}))
    with pytest.raises(AttentionSaltError, match=r"a\.json: schema 'other/1', expected 'fwi-attn-attention-salt/1'"):
        read_attention_salt(tmp_path / "a.json")
    (tmp_path / "b.json").write_text(json.dumps({"schema": "fwi-attn-attention-salt/1", "indices": [0, 1],
                                                 "levels": {"gates.1": {"salt_auc": [0.5], "boundary_auc": [0.5, 1]}}}))
    with pytest.raises(AttentionSaltError, match=r"gates\.1 do not have one value per index \(2\)"):
        read_attention_salt(tmp_path / "b.json")


# ----------------------------------------------------------------------------- figures


def test_attention_salt_figures(tiny_dataset, tmp_path):
    """The study figure (AUC by variant and level, mean over seeds) and the AUC-IoU relation, from
    the files evaluate writes."""
    from fwi_attn.results.attention_plots import (
        attention_iou_correlation,
        attention_salt_summary,
        plot_attention_salt,
        plot_attention_vs_iou,
    )

    cfg = tiny_dataset["config"]
    runs = {}
    for variant, seed in (("cbam", 0), ("cbam", 1), ("se", 0)):
        out = tmp_path / variant / f"seed{seed}"
        evaluate_checkpoint(cfg, _checkpoint(tmp_path / f"{variant}{seed}.pt", tiny_dataset, variant=variant,
                                             seed=seed), out, progress=False)
        runs[variant, seed] = out
    files = [d / ATTENTION_SALT_FILE for d in runs.values()]
    rows = attention_salt_summary(files)
    assert {r["variant"] for r in rows} == {"cbam"} and all(r["n_seeds"] == 2 for r in rows)
    strides = [r["stride"] for r in rows]
    assert strides == sorted(strides, reverse=True)  # coarse to fine
    for r in rows:
        per_seed = [np.mean([v for v in read_attention_salt(f)["levels"][r["level"]]["salt_auc"] if v is not None])
                    for f in files[:2]]
        assert r["salt_auc"] == pytest.approx(np.mean(per_seed)) and r["salt_auc_err"] == pytest.approx(
            np.std(per_seed, ddof=1))
    plot_attention_salt(files, tmp_path / "attention_salt.png")
    assert (tmp_path / "attention_salt.png").stat().st_size > 0
    cbam = [runs["cbam", 0], runs["cbam", 1]]
    corr = attention_iou_correlation(cbam)
    n_salt = sum(v is not None for v in read_attention_salt(files[0])["levels"][rows[0]["level"]]["salt_auc"])
    assert set(corr) == {r["level"] for r in rows} and all(c["n"] <= 2 * n_salt for c in corr.values())
    assert all(c["rho"] is None or -1 <= c["rho"] <= 1 for c in corr.values())
    plot_attention_vs_iou(cbam, tmp_path / "auc_iou.png", title="cbam")
    plot_attention_vs_iou([runs["se", 0]], tmp_path / "auc_iou_se.png")  # no map: a placeholder
    assert (tmp_path / "auc_iou.png").stat().st_size > 0 and (tmp_path / "auc_iou_se.png").stat().st_size > 0


def test_attention_iou_correlation_is_spearman_over_the_seeds(tmp_path):
    """Pairs pooled over runs, samples without salt (None AUC) or without IoU left out."""
    from fwi_attn.results.attention_plots import attention_iou_correlation

    auc = {0: [0.9, 0.6, None, 0.7], 1: [0.8, 0.55, 0.65, 0.5]}
    iou = {0: [0.8, 0.2, None, 0.5], 1: [0.7, 0.1, 0.3, float("nan")]}
    for seed in (0, 1):
        d = tmp_path / f"seed{seed}"
        d.mkdir()
        level = {"kind": "attention", "shape": [4, 4], "stride": 2, "salt_auc": auc[seed], "boundary_auc": auc[seed]}
        (d / ATTENTION_SALT_FILE).write_text(json.dumps({"schema": "fwi-attn-attention-salt/1", "variant": "cbam",
                                                         "indices": [0, 1, 2, 3], "levels": {"gates.1": level}}))
        (d / "metrics.json").write_text(json.dumps({"per_sample": {"salt_iou": iou[seed]}}))
    got = attention_iou_correlation([tmp_path / "seed0", tmp_path / "seed1"])["gates.1"]
    # Pairs (0.9, 0.8), (0.6, 0.2), (0.7, 0.5), (0.8, 0.7), (0.55, 0.1), (0.65, 0.3): the same order.
    assert got["n"] == 6 and got["rho"] == pytest.approx(1.0)
