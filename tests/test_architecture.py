"""The package's shape: no import cycles, a light workflow parse, a non-editable install."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fwi_attn"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at the top or inside functions alike (a lazy
    import still ties two modules together)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            # The deepest package module each import names (``from a.b import c`` may import a.b.c).
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_inside_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_stages_import_only_earlier_stages():
    # io -> data -> nn -> learn -> physics -> results; cli and the config/layout leaves may import any.
    order = ["config", "layout", "io", "data", "nn", "learn", "physics", "results"]
    rank = {stage: i for i, stage in enumerate(order)}
    bad = []
    for module, deps in import_graph().items():
        stage = module.split(".")[1] if "." in module else None
        if stage not in rank or stage in ("results",):
            continue
        for dep in deps:
            dep_stage = dep.split(".")[1] if "." in dep else None
            if dep_stage in rank and rank[dep_stage] > rank[stage]:
                bad.append(f"{module} imports {dep}")
    assert not bad, "a stage imports a later one: " + "; ".join(sorted(bad))


#: Modules that read and write the persisted files, score predictions or list data: none needs torch.
TORCH_FREE = ["fwi_attn.io", *sorted(f"fwi_attn.io.{p.stem}" for p in (PACKAGE / "io").glob("[!_]*.py")),
              "fwi_attn.data.normalize", "fwi_attn.data.sources", "fwi_attn.data.dataset",
              "fwi_attn.learn.metrics"]


def test_format_layer_metrics_and_loader_import_without_torch():
    code = ("import importlib, sys\n"
            f"for name in {TORCH_FREE!r}:\n"
            "    importlib.import_module(name)\n"
            "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "print(len(loaded), loaded[:5])\n")
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("0 "), f"torch was imported: {out.stdout}"
    assert len(TORCH_FREE) > 10  # the io modules were found


def test_torch_free_metrics_and_normaliser_work_without_torch():
    """The numpy paths run without importing torch: velocity scaling, gathers normalisation, every
    metric but SSIM, and a loader's raw reads of the stats' mean model."""
    code = ("import sys\n"
            "import numpy as np\n"
            "from fwi_attn.data.normalize import Normalizer, VelocityScale\n"
            "from fwi_attn.learn.metrics import METRICS, mae, psnr, salt_iou, salt_iou_band, pooled\n"
            "rng = np.random.default_rng(0)\n"
            "v = rng.uniform(1500, 4500, (2, 12, 12))\n"
            "s = VelocityScale(1500.0, 4500.0)\n"
            "assert np.allclose(s.velocity_inverse(s.velocity(v)), v)\n"
            "n = Normalizer(-2.0, 3.0, 1500.0, 4500.0, 2.0, 10.0)\n"
            "g = n.gathers(rng.normal(size=(3, 40, 8)).astype(np.float32))\n"
            "assert np.allclose(n.velocity(v), s.velocity(v)) and g.dtype == np.float32\n"
            "mae(v, v[::-1]); psnr(s.unit_interval(s.velocity(v)), s.unit_interval(s.velocity(v)))\n"
            "salt_iou(v, v, 4200.0); salt_iou_band(v, v, 4200.0)\n"
            "print('torch' in sys.modules, len(METRICS))\n")
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "11"], out.stdout


def test_non_editable_install_finds_its_schema_and_presets(tmp_path):
    """``pip install .`` (not editable): the schema and presets travel as package data."""
    src, target = tmp_path / "src", tmp_path / "site"
    # A copy of what a source distribution holds, so the build leaves nothing in the repository.
    shutil.copytree(PACKAGE, src / "fwi_attn", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PACKAGE.parent / name, src / name)
    # --no-deps: the dependencies are this interpreter's already; the build uses its setuptools.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, cwd=tmp_path)
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import fwi_attn, sys; from fwi_attn.cli import main; print(fwi_attn.__file__); sys.exit(main(sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", code, "check-config", "-c", "default"], capture_output=True,
                         text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(str(target)), out.stdout  # the installed copy, not the repository's
    assert "valid" in out.stdout


def test_no_private_name_is_imported_across_modules():
    """A ``_name`` is its module's own: another module that needs it needs a public name in one home."""
    import ast

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fwi_attn"):
                found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.module}.{a.name}"
                          for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_no_module_is_over_600_lines():
    """Modules hold one concept each; one that outgrows 600 lines holds several and is split along its seams."""
    long = {str(p.relative_to(PACKAGE.parent)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long, f"modules over 600 lines: {long}"
