"""The notebooks in notebooks/ run top to bottom, on tiny settings, in a real Jupyter kernel (nbclient).

Each notebook's first code cell is tagged ``parameters``; the test inserts a cell after it that
overrides those settings (papermill style), so the committed notebooks keep their full settings.
The notebooks only call `alignx`: they define no functions or classes, and import nothing but
`alignx`, `pandas` (for tables) and `pathlib`.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
FIXTURES = ROOT / "tests" / "fixtures"
MAX_BYTES = 200_000
ALLOWED_IMPORTS = {"alignx", "pandas", "pathlib"}

# Tiny settings per notebook; {tmp} is the test's temporary folder.
TINY = {
    "01_quickstart": 'PRECISION = "fp32"\nMAX_NEW_TOKENS = 16',
    # fp32 on one thread: the recipe's bf16 autocast on two threads is ~8x slower on a busy 2-core CPU
    "02_train_and_evaluate": ('MAX_STEPS = 2\nAUGMENT = ""\nOUT = r"{tmp}/adapter"\n'
                              'TRAIN_FLAGS = ["--precision", "fp32", "--bf16", "false", "--threads", "1"]'),
    "03_controllability": ('VALUES = [0.0, 1.0]\nPROMPTS = ["Any tips for a weekend trip?"]\n'
                           'PAIRS_LIMIT = 2\nMAX_NEW_TOKENS = 16\nREPORT = r"{tmp}/report"'),
}


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def read(path: Path):
    import nbformat

    return nbformat.read(path, as_version=4)


def code_cells(book) -> list[str]:
    return [c.source for c in book.cells if c.cell_type == "code"]


def test_the_three_notebooks_exist_with_tiny_settings_for_each():
    assert [p.stem for p in notebook_paths()] == sorted(TINY)


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_committed_notebook_is_small_valid_and_has_a_parameters_cell(path):
    import nbformat

    assert path.stat().st_size < MAX_BYTES, f"{path.name}: {path.stat().st_size} bytes; clear its outputs"
    book = read(path)
    nbformat.validate(book)
    first = next(c for c in book.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", []), f"{path.name}: first code cell is not tagged 'parameters'"
    assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code"), f"{path.name}: outputs not cleared"


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_only_calls_alignx(path):
    for source in code_cells(read(path)):
        tree = ast.parse(source)
        for node in ast.walk(tree):
            assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)), \
                f"{path.name} defines {node.name!r}; put logic in the library"
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED_IMPORTS, f"{path.name} imports {roots - ALLOWED_IMPORTS}"


@pytest.mark.slow
@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_notebook_runs_on_tiny_settings(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    book = read(path)
    index = next(i for i, c in enumerate(book.cells) if "parameters" in c.metadata.get("tags", []))
    override = nbformat.v4.new_code_cell("# Injected by tests/test_notebooks.py\n" +
                                         TINY[path.stem].format(tmp=tmp_path))
    override.metadata["tags"] = ["injected-parameters"]
    book.cells.insert(index + 1, override)
    client = NotebookClient(book, timeout=600, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": str(ROOT)}})
    # One torch thread per kernel: tiny workloads, and no oversubscription when the cores are shared.
    client.execute(env=dict(os.environ, OMP_NUM_THREADS="1"))  # raises CellExecutionError on a failing cell
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum(c.cell_type == "code" and c.get("execution_count") is not None for c in book.cells) == \
        len(code_cells(book))
