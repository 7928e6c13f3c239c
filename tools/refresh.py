"""Re-execute every notebook of the book in place, in reading order, so stored outputs come from one
clean top-to-bottom run in the current environment (the same kernel nbval uses).

Usage: ``python tools/refresh.py`` (all chapters) or ``python tools/refresh.py book/02_ols_gd.ipynb``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager

ROOT = Path(__file__).resolve().parent.parent


def chapters() -> list[Path]:
    """Every notebook under book/: the numbered chapters in reading order, then the others."""
    nbs = sorted((ROOT / "book").glob("*.ipynb"))
    return [p for p in nbs if p.name[:2].isdigit()] + [p for p in nbs if not p.name[:2].isdigit()]


def refresh(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    km = KernelManager(kernel_name=CURRENT_ENV_KERNEL_NAME,
                       kernel_spec_manager=NbvalKernelspecManager())
    start = time.perf_counter()
    NotebookClient(nb, km=km, timeout=600,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:  # execution timings in metadata would change on every run
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str]) -> int:
    paths = [Path(a).resolve() for a in argv] or chapters()
    for p in paths:
        print(f"{p.relative_to(ROOT)}: {refresh(p):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
