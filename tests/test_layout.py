"""fwi_attn.layout owns the names of a run's files: nothing else in the package or the rules spells them."""
from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from fwi_attn import layout

REPO = Path(__file__).resolve().parent.parent
RUN_FILE_NAMES = [f.default for f in dataclasses.fields(layout.RunFiles)]
NAME = re.compile("|".join(rf"(?<![\w.]){re.escape(n)}(?![\w])" for n in RUN_FILE_NAMES))
QUOTED = re.compile(r"""("([^"\\\n]|\\.)*"|'([^'\\\n]|\\.)*')""")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of a module, its classes and functions (prose, not names in use)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def python_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal in ``path`` naming a run file, docstrings left out."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _docstrings(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
            and NAME.search(node.value)]


def rule_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every quoted string naming a run file in a Snakemake file, comments left out."""
    hits = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0] if not line.lstrip().startswith(("\"", "'")) else line
        hits += [(lineno, m.group(0)) for m in QUOTED.finditer(code) if NAME.search(m.group(0))]
    return hits


def test_the_record_names_each_file_once():
    assert len(set(RUN_FILE_NAMES)) == len(RUN_FILE_NAMES)
    assert all(isinstance(getattr(layout.RUN, f.name), str) for f in dataclasses.fields(layout.RunFiles))


def test_no_run_file_name_is_spelled_outside_layout():
    sources = [p for p in sorted((REPO / "fwi_attn").rglob("*.py")) if p != REPO / "fwi_attn" / "layout.py"]
    rules = [REPO / "Snakefile", *sorted((REPO / "workflows").rglob("*.smk"))]
    found = [f"{p.relative_to(REPO)}:{line}: {text!r}" for p in sources for line, text in python_literals(p)]
    found += [f"{p.relative_to(REPO)}:{line}: {text}" for p in rules for line, text in rule_literals(p)]
    assert not found, ("run-file names spelled outside fwi_attn/layout.py (use layout.RUN.<name>):\n"
                       + "\n".join(found))


def test_the_scanner_sees_a_literal(tmp_path):
    """The check above can fail: a literal in code is found, one in a docstring or comment is not."""
    py = tmp_path / "m.py"
    py.write_text('"""Writes metrics.json."""\nPATH = "run/metrics.json"\nx = f"{PATH}: history.csv bad"\n')
    assert [line for line, _ in python_literals(py)] == [2, 3]
    smk = tmp_path / "r.smk"
    smk.write_text('# writes model.pt\nrule a:\n    output: f"{STUDY}/{{variant}}/seed{{seed}}/model.pt"\n')
    assert [line for line, _ in rule_literals(smk)] == [3]


def test_a_run_folder_round_trips(tmp_path):
    folder = layout.run_dir(tmp_path, "cbam", 3)
    assert layout.parse_run_dir(folder) == ("cbam", 3)
    assert layout.parse_run_dir(layout.baseline_dir(tmp_path)) is None
    assert layout.run_pattern("results/s", layout.RUN.metrics) == "results/s/{variant}/seed{seed}/metrics.json"
