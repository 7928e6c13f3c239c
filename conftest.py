"""pytest configuration shared by the library tests and the notebook checks (nbval).

nbval compares every stored text output of every chapter exactly. The only outputs removed
from comparison are binary images stored by ``glue`` (PNG bytes vary with the platform's
image encoder); numbers, text and LaTeX are always compared.
"""


def pytest_collectstart(collector):
    if collector.path.suffix == ".ipynb" and hasattr(collector, "skip_compare"):
        collector.skip_compare += ("application/papermill.record/image/png",)
