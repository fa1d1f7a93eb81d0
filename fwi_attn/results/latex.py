r"""The report's tables as LaTeX, ready to ``\\input`` into a paper (booktabs rules).

Each ``.tex`` table is made from the report's markdown table itself, cell by cell, so both carry
the same numbers with the same rounding; only the typography changes (``±``, ``−``, ``→`` and a
number's minus sign in math mode, ``**bold**`` as ``\\textbf``, ```code``` as ``\\texttt``, LaTeX's
special characters escaped). Needs ``\\usepackage{booktabs}`` in the document.
"""
from __future__ import annotations

import os
import re

from fwi_attn.io.files import atomic_path

#: Characters LaTeX treats specially, and what stands for each in text.
SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
#: Unicode signs of the markdown and their LaTeX.
SIGNS = {"±": r"$\pm$", "−": r"$-$", "→": r"$\rightarrow$", "≤": r"$\leq$", "≥": r"$\geq$", "²": r"$^2$"}


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped and the markdown's signs in math mode."""
    out = "".join(SPECIALS.get(c, c) for c in text)
    for sign, tex in SIGNS.items():
        out = out.replace(sign, tex)
    # A number's minus sign, not a hyphen: "-0.02" in text mode would print a hyphen.
    return re.sub(r"(?<![\w$])-(?=\.?\d)", r"$-$", out)


def cell_latex(cell: str) -> str:
    """One markdown cell as LaTeX: ``**x**`` bold, ```x``` typewriter, the rest escaped."""
    parts = re.split(r"(\*\*.+?\*\*|`[^`]+`)", cell.strip())
    out = []
    for part in parts:
        if part.startswith("**") and part.endswith("**") and len(part) > 4:
            out.append(r"\textbf{" + cell_latex(part[2:-2]) + "}")
        elif part.startswith("`") and part.endswith("`") and len(part) > 2:
            out.append(r"\texttt{" + escape(part[1:-1]) + "}")
        else:
            out.append(escape(part))
    return "".join(out)


def split_row(line: str) -> list[str]:
    """The cells of one markdown table row ``| a | b |``."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_table_rows(md: str) -> tuple[list[str], list[str], list[list[str]]]:
    """``(header, alignments, body rows)`` of the first pipe table in ``md`` (alignment ``l``/``r``/``c``)."""
    lines = [ln for ln in md.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        raise ValueError("no markdown table found (a header row and a |---| rule are needed)")
    head, rule, *body = lines
    aligns = []
    for spec in split_row(rule):
        right, left = spec.endswith(":"), spec.startswith(":")
        aligns.append("c" if left and right else "r" if right else "l")
    return split_row(head), aligns, [split_row(r) for r in body]


def markdown_to_latex(md: str, caption: str | None = None, label: str | None = None) -> str:
    """The first pipe table of ``md`` as a booktabs ``tabular`` (inside a ``table`` float when a
    caption or label is given)."""
    head, aligns, body = markdown_table_rows(md)
    lines = [r"\begin{tabular}{" + "".join(aligns) + "}", r"\toprule",
             " & ".join(cell_latex(c) for c in head) + r" \\", r"\midrule"]
    lines += [" & ".join(cell_latex(c) for c in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption is None and label is None:
        return "\n".join(lines) + "\n"
    float_ = [r"\begin{table}[tbp]", r"\centering", r"\small"]
    if caption:
        float_.append(r"\caption{" + escape(caption) + "}")
    if label:
        float_.append(r"\label{" + label + "}")
    return "\n".join(float_ + lines + [r"\end{table}"]) + "\n"


def write_latex(md: str, path: str | os.PathLike, caption: str | None = None, label: str | None = None):
    """Write :func:`markdown_to_latex` of ``md`` to ``path`` atomically; returns the path."""
    with atomic_path(path, suffix=".tex") as tmp:
        tmp.write_text(markdown_to_latex(md, caption, label), encoding="utf-8")
    return path
