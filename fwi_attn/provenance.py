"""Where a result came from: the code's commit, the package versions, the machine and the config.

Light on purpose: reading provenance imports neither torch nor deepwave (versions come from
``importlib.metadata``); the device is named only when torch is already loaded by the caller.
Nothing here fails: what cannot be known (no git checkout, no ``git`` program, a package not
installed) is ``None``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from pathlib import Path

#: The packages whose versions a result records.
PACKAGES = ("fwi_attn", "torch", "deepwave", "snakemake", "numpy")

#: The source tree: the folder holding the ``fwi_attn`` package.
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_state() -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the checkout the code runs from
    (None for both outside a git checkout, e.g. an installed wheel). Dirty: tracked files changed."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """``{package: version or None}`` from the installed distributions' metadata (nothing imported)."""
    from importlib import metadata

    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            try:
                out[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def host_cpu() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or None


def device() -> str:
    """``"cpu"``, or the GPU's name when torch is already imported and sees CUDA; never imports torch."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            return torch.cuda.get_device_name(torch.cuda.current_device())
    except Exception:  # a broken CUDA setup still leaves the result's provenance readable
        return "cpu (CUDA unavailable)"
    return "cpu"


def config_hash(config) -> str:
    """sha256 of a resolved config as canonical JSON (sorted keys, no spaces): the same settings
    give the same hash whatever order they were written in. ``config``: a dict or a Config."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def provenance(config=None) -> dict:
    """What a result records about its making: ``commit``, ``dirty``, ``versions``, ``device``,
    ``host`` (CPU model) and ``config_sha256`` (None without a config)."""
    git = git_state()
    return {"commit": git["commit"], "dirty": git["dirty"], "versions": package_versions(), "device": device(),
            "host": host_cpu(), "config_sha256": None if config is None else config_hash(config)}


def provenance_markdown(record: dict) -> str:
    """A report's Provenance section body: one bullet per fact of :func:`provenance`."""
    commit = record.get("commit") or "unknown (not a git checkout)"
    dirty = {True: "yes: uncommitted changes to tracked files", False: "no", None: "unknown"}[record.get("dirty")]
    versions = ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items() if v) or "unknown"
    return "\n".join([
        f"- code: commit `{commit}`; uncommitted changes: {dirty}",
        f"- versions: {versions}",
        f"- host: {record.get('host') or 'unknown'}; device: {record.get('device') or 'unknown'}",
        f"- config sha256: `{record.get('config_sha256') or 'none'}`",
    ]) + "\n"
