"""The student's folder, generated from the reference solution.

The student's ``linear_classifier.py`` is ``reference.py`` with every public function's body
replaced by a stub: the module's docstring (the conventions), ``import numpy as np``, and each
function's signature and docstring (its task). The teacher's copy (``--solution``) is
``reference.py`` itself, which calls lintorch. ``GUIDE.md`` becomes the folder's README.
"""

from __future__ import annotations

import ast
from pathlib import Path

from . import KIT_VERSION, STUDENT_FILE

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "reference.py"
GUIDE = HERE / "GUIDE.md"


def student_source() -> str:
    """``reference.py`` with its lintorch imports, private helpers and function bodies removed."""
    text = REFERENCE.read_text()
    lines, tree = text.splitlines(keepends=True), ast.parse(text)
    docstring = tree.body[0]
    parts = ["".join(lines[:docstring.end_lineno]), "\nimport numpy as np\n"]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            head = "".join(lines[node.lineno - 1:node.body[0].end_lineno])  # def + docstring
            parts.append(f"\n\n{head}    # Your code here.\n"
                         f"    raise NotImplementedError(\"{node.name} is not written yet\")\n")
    return "".join(parts)


def init(folder: Path, solution: bool = False) -> list[Path]:
    """Write the student's folder (the reference solution with ``solution``); ValueError if
    ``folder`` holds anything already (a student's work is never overwritten)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"{folder} is not an empty folder: init never overwrites a student's "
                         f"work; give a new folder")
    code = REFERENCE.read_text() if solution else student_source()
    guide = GUIDE.read_text().replace("{KIT_VERSION}", KIT_VERSION)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / STUDENT_FILE, folder / "README.md"]
    for path, content in zip(written, (code, guide)):
        path.write_text(content)
    return written
