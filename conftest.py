"""pytest configuration shared by the library tests and the notebook checks (nbval).

nbval compares every stored text output of every chapter exactly. The only outputs removed
from comparison are binary images stored by ``glue`` (PNG bytes vary with the platform's
image encoder) and, in the interactive explorer only, the plotly figure's HTML (a large
JSON blob); that notebook prints a text summary of the same runs, which is compared.
Numbers, text and LaTeX are always compared.
"""

PLOTLY_NOTEBOOKS = {"10_explorer.ipynb"}


def pytest_collectstart(collector):
    if collector.path.suffix == ".ipynb" and hasattr(collector, "skip_compare"):
        collector.skip_compare += ("application/papermill.record/image/png",)
        if collector.path.name in PLOTLY_NOTEBOOKS:
            collector.skip_compare += ("text/html",)
