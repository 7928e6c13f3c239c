"""pytest configuration shared by the library tests and the notebook checks (nbval).

nbval compares every stored text output of every chapter with a fresh run. Two changes to
its comparison, both narrow:

* a printed floating-point number may differ from the stored one by at most one unit in its
  last printed digit (``tools/nbcompare.py``): another CPU or BLAS rounds the last bits
  differently, and a value on a rounding boundary (0.9675 shown as 0.968 or 0.967) flips its
  last digit. Every other character, every integer and every larger difference still fails.
* two outputs are not compared at all: binary images stored by ``glue`` (PNG bytes vary with
  the platform's image encoder) and, in the interactive explorer only, the plotly figure's
  HTML (a large JSON blob); that notebook prints a text summary of the same runs, which is
  compared.

The book's output policy (README, "Refreshing stored outputs") keeps printed numbers to the
digits their claims need, so that this comparison is both portable and strict.

``--probe-seed=S`` (optionally ``--probe-delta=D``) runs everything under the rounding probe
(``tools/probe.py``): bnlib in this process (the library tests) and every notebook kernel
(through an IPython start-up file in a temporary ``IPYTHONDIR``) compute each product,
reduction and elementary function with a seeded perturbation at the rounding level, as another
CPU or BLAS would; the outputs are compared with the stored ones by the same rule.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from tools.nbcompare import numbers_match

pytest_plugins = ["pytester"]  # tests/test_nbcompare.py runs nbval on a small notebook

PLOTLY_NOTEBOOKS = {"13_explorer.ipynb"}


def pytest_addoption(parser):
    group = parser.getgroup("probe", "rounding probe (tools/probe.py)")
    group.addoption("--probe-seed", type=int, default=None, metavar="S",
                    help="run bnlib and every notebook kernel under the rounding probe with seed S")
    group.addoption("--probe-delta", type=float, default=None, metavar="D",
                    help="the probe's relative perturbation (default tools.probe.DEFAULT_DELTA)")


def pytest_configure(config):
    _install_probe(config)
    # Notebooks always run in the kernel of the environment pytest runs in (as tools/refresh.py
    # does); set here rather than in addopts so that `pytest tests` works without nbval.
    if config.pluginmanager.hasplugin("nbval") and hasattr(config.option, "nbval_current_env"):
        config.option.nbval_current_env = True
        _tolerate_last_digit()


_PROBE_ENV = ("IPYTHONDIR",)


def _install_probe(config):
    """With --probe-seed: the probe in this process and a kernel start-up file that installs it."""
    seed = config.getoption("probe_seed", None)
    if seed is None:
        if config.getoption("probe_delta", None) is not None:
            raise ValueError("--probe-delta needs --probe-seed")
        return
    from tools import probe

    delta = config.getoption("probe_delta", None)
    delta = probe.DEFAULT_DELTA if delta is None else delta
    if "bnlib" in sys.modules:
        raise RuntimeError("the rounding probe must be installed before bnlib is imported")
    probe.install(seed, delta)
    ipython_dir = Path(tempfile.mkdtemp(prefix="bnprobe-ipython-"))
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-bnprobe.py").write_text(probe.startup_source(seed, delta))
    config._probe = {"seed": seed, "delta": delta, "dir": ipython_dir,
                     "env": {k: os.environ.get(k) for k in _PROBE_ENV}}
    os.environ["IPYTHONDIR"] = str(ipython_dir)


def pytest_unconfigure(config):
    state = getattr(config, "_probe", None)
    if state is None:
        return
    for key, value in state["env"].items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(state["dir"], ignore_errors=True)


def pytest_report_header(config):
    state = getattr(config, "_probe", None)
    if state is not None:
        return f"rounding probe: seed {state['seed']}, delta {state['delta']:g} (tools/probe.py)"
    return None


def pytest_collectstart(collector):
    if collector.path.suffix == ".ipynb" and hasattr(collector, "skip_compare"):
        collector.skip_compare += ("application/papermill.record/image/png",)
        if collector.path.name in PLOTLY_NOTEBOOKS:
            collector.skip_compare += ("text/html",)


def _flatten(outputs, skip):
    """nbval's grouping of compared strings by key (a stream by its name), in output order."""
    groups = defaultdict(list)
    for index, output in enumerate(outputs):
        if output.get("output_type") == "stream":
            if output.get("name") not in skip:
                groups[output["name"]].append((index, "text", None, output.get("text")))
            continue
        for key, value in output.items():
            if key in skip:
                continue
            if key == "data":
                for mime, data in value.items():
                    if mime not in skip:
                        groups[mime].append((index, "data", mime, data))
            else:
                groups[key].append((index, key, None, value))
    return groups


def _tolerate_last_digit():
    from nbval import plugin

    if getattr(plugin.IPyNbCell.compare_outputs, "_last_digit", False):
        return
    original = plugin.IPyNbCell.compare_outputs

    def compare_outputs(self, test, ref, skip_compare=None):
        skip = skip_compare or self.parent.skip_compare
        test = copy.deepcopy(test)
        ref_groups, test_groups = _flatten(ref, skip), _flatten(test, skip)
        for key, ref_items in ref_groups.items():
            test_items = test_groups.get(key, [])
            if len(test_items) != len(ref_items):
                continue  # nbval reports the difference in the number of outputs
            for (_, _, _, r), (i, field, mime, t) in zip(ref_items, test_items, strict=True):
                r_clean, t_clean = self.sanitize(r), self.sanitize(t)
                if isinstance(r, str) and r_clean != t_clean and numbers_match(r_clean, t_clean):
                    # within the last printed digit: compare as the stored value
                    if mime is None:
                        test[i][field] = r
                    else:
                        test[i][field][mime] = r
        return original(self, test, ref, skip_compare)

    compare_outputs._last_digit = True
    plugin.IPyNbCell.compare_outputs = compare_outputs
