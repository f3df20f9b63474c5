"""Tables and figures to files: Markdown, CSV, LaTeX booktabs, PNG and SVG.

Every file is written to a temporary name in the output folder and then renamed over the
final one, so a reader (or an interrupted report) never sees half a file.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from dropbench.atomic import write_atomic, write_text_atomic
from dropbench.report.tables import NO_P, Table

FIGURE_FORMATS = ("png", "svg")
#: CSV numbers to 10 significant digits: 7.49, not 7.489999999999997 (float noise of a mean)
CSV_FLOAT = "%.10g"
DPI = 150


def sibling(stem: Path, extension: str) -> Path:
    """``stem.extension``; not ``with_suffix``, which would cut a name such as ``p0.5`` at its dot."""
    return stem.parent / f"{stem.name}.{extension}"


def write_text(path: Path, text: str) -> Path:
    return write_text_atomic(path, text)


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """``stem.png`` and ``stem.svg``."""
    return [
        write_atomic(sibling(stem, fmt), lambda tmp, f=fmt: fig.savefig(tmp, format=f, dpi=DPI))
        for fmt in FIGURE_FORMATS
    ]


def alignment(table: Table) -> str:
    """'l' for each leading text column, 'r' for each number column."""
    columns = len(table.shown.columns)
    return ("l" * table.text_columns + "r" * columns)[:columns]


def markdown(table: Table, level: int = 3) -> str:
    """A heading, the note, and a GitHub pipe table (cells kept as written: no "0.50" -> "0.5")."""
    align = [{"l": "left", "r": "right"}[a] for a in alignment(table)]
    body = table.shown.to_markdown(index=False, disable_numparse=True, colalign=align)
    return f"{'#' * level} {table.title}\n\n{table.note}.\n\n{body}\n"


#: LaTeX spellings of the characters pandas' ``escape=True`` handles in cells but not in captions,
#: and of the Unicode signs the tables use, which need no extra package this way
LATEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
#: (< and > too: in LaTeX's default font encoding they print as ¡ and ¿ outside math)
UNICODE = {"±": r"$\pm$", "Δ": r"$\Delta$", NO_P: "---", "<": r"\textless{}", ">": r"\textgreater{}"}


def latex_escape(text: str) -> str:
    return "".join(LATEX.get(char, char) for char in text)


def latex(table: Table, caption: str, key: str) -> str:
    """A booktabs ``table`` environment labelled ``tab:key``; special characters escaped."""
    text = table.shown.to_latex(
        index=False,
        escape=True,
        column_format=alignment(table),
        caption=latex_escape(caption),
        label=f"tab:{key}",
    )
    for sign, spelling in UNICODE.items():
        text = text.replace(sign, spelling)
    return text


def write_table(table: Table, stem: Path, caption: str) -> list[Path]:
    """``stem.md``, ``stem.csv`` (the numbers, not the formatted cells) and ``stem.tex``."""
    return [
        write_text(sibling(stem, "md"), markdown(table)),
        write_atomic(
            sibling(stem, "csv"), lambda tmp: table.numbers.to_csv(tmp, index=False, float_format=CSV_FLOAT)
        ),
        write_text(sibling(stem, "tex"), latex(table, caption, stem.name)),
    ]
