"""Sphinx extension: serve MathJax and plotly.js from the built site, so the book reads offline.

- MathJax 3 comes from the pinned PyPI package ``django-static-mathjax`` (it ships MathJax's
  ``es5`` build and has no dependencies); its ``tex-mml-chtml.js`` and CHTML fonts are copied
  into ``_static/mathjax/`` and Sphinx's ``mathjax_path`` points there instead of a CDN.
- plotly.js comes from the pinned ``plotly`` package and is copied once into ``_static/``; a
  page loads it only if it holds a plotly figure (``plotly-graph-div``), so figures are
  written with ``include_plotlyjs=False``.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def _mathjax_dir() -> Path:
    import mathjax  # the django-static-mathjax package

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _config_inited(app, config):
    config.mathjax_path = "mathjax/tex-mml-chtml.js"


def _page_context(app, pagename, templatename, context, doctree):
    if "plotly-graph-div" in context.get("body", ""):
        app.add_js_file("plotly.min.js")


def _build_finished(app, exc):
    if exc is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    src = _mathjax_dir()
    dst = static / "mathjax"
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "tex-mml-chtml.js", dst / "tex-mml-chtml.js")
    shutil.copytree(src / "output" / "chtml", dst / "output" / "chtml", dirs_exist_ok=True)
    shutil.copyfile(_plotly_js(), static / "plotly.min.js")


def setup(app):
    app.connect("config-inited", _config_inited)
    app.connect("html-page-context", _page_context)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
