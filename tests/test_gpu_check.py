"""``benchmarks/gpu_check.py`` (``make gpu-check``) on the CPU: the no-GPU exit, the docs
section's replacement, and every stage at tiny size (``--tiny``) into a copy of the docs file."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(SCRIPT.parent))
import gpu_check  # noqa: E402


def _run(*args, env=None, timeout=600):
    env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n")
    proc = _run("--docs", str(docs), env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr
    assert "found no CUDA GPU" in proc.stdout
    assert docs.read_text() == "# Benchmarks\n"


def test_the_section_is_replaced_between_its_markers_or_appended(tmp_path):
    docs = tmp_path / "b.md"
    docs.write_text(f"# B\n\nbefore\n{gpu_check.BEGIN}\nold figures\n{gpu_check.END}\nafter\n")
    gpu_check.replace_section(docs, gpu_check.check_docs(docs), f"{gpu_check.BEGIN}\nnew\n{gpu_check.END}")
    assert docs.read_text() == f"# B\n\nbefore\n{gpu_check.BEGIN}\nnew\n{gpu_check.END}\nafter\n"
    assert [p.name for p in tmp_path.iterdir()] == ["b.md"]  # no temporary file left
    plain = tmp_path / "plain.md"
    plain.write_text("# B\n")
    gpu_check.replace_section(plain, gpu_check.check_docs(plain), f"{gpu_check.BEGIN}\nx\n{gpu_check.END}")
    assert plain.read_text() == f"# B\n\n{gpu_check.HEADING}\n\n{gpu_check.BEGIN}\nx\n{gpu_check.END}\n"
    docs.write_text(f"{gpu_check.END}\n{gpu_check.BEGIN}\n")
    with pytest.raises(gpu_check.CheckError, match="must appear once each, in that order"):
        gpu_check.check_docs(docs)
    proc = _run("--tiny", "--docs", str(docs), "--stages", "train")
    assert proc.returncode == 2 and "must appear once each" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_tiny_run_writes_every_stage_into_the_docs_section(tmp_path):
    """Every stage for real at tiny size on the CPU (about 90 s on 2 shared cores); the CUDA
    tests are collected and skipped here."""
    docs = tmp_path / "benchmarks.md"
    original = (REPO / "docs" / "benchmarks.md").read_text()
    docs.write_text(original)
    proc = _run("--tiny", "--docs", str(docs), "--tests", str(REPO / "tests" / "test_cuda.py"),
                "--keep", str(tmp_path / "work"))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    text = docs.read_text()
    head, rest = text.split(gpu_check.BEGIN)
    body, tail = rest.split(gpu_check.END)
    # Only the section changed.
    assert original.startswith(head) and original.endswith(tail)
    assert "**Tiny CPU run**" in body
    for title in ("CUDA tests", "Data generation", "Training loop", "Physics check and FWI iteration",
                  "Paper-preset mini study"):
        assert f"| {title} | " in body and f"### {title}" in body, title
    assert body.count("| ok") == 5, body
    assert "skipped" in body  # pytest's summary of the CUDA tests
    assert "ratio ours/bare samples/s" in body and "ours, fp32, channels_last" in body
    assert "### FWI iteration" in body
    # The study ran every stage through Snakemake: per-rule job times and the metrics table.
    for rule in ("generate", "train", "evaluate", "physics", "refine"):
        assert f"| {rule} | " in body, rule
    assert "| none |" in body.split("Metrics table")[1]
