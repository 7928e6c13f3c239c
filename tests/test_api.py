"""The public surface of bnlib agrees with itself: ``bnlib.PUBLIC`` is the one list, and each
module's ``__all__``, the names ``bnlib.X`` and the API page follow it; imports point down
the layer order of ``PUBLIC``; no underscore name crosses a module boundary."""

import ast
import re
from pathlib import Path

import pytest

import bnlib

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "bnlib"
ORDER = list(bnlib.PUBLIC)


def test_modules_on_disk_are_the_listed_ones():
    on_disk = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert on_disk == set(ORDER)
    assert len(on_disk) + 1 <= 16                      # at most 16 files with __init__


@pytest.mark.parametrize("module", ORDER)
def test_all_is_the_public_list_and_defined_here(module):
    mod = getattr(bnlib, module)
    assert list(mod.__all__) == list(bnlib.PUBLIC[module])
    tree = ast.parse((PKG / f"{module}.py").read_text())
    defined = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    for name in bnlib.PUBLIC[module]:
        assert name in defined, f"{module}.{name} is not defined in its module"
        assert getattr(bnlib, name) is getattr(mod, name)


def test_names_are_unique_and_public():
    names = [n for names in bnlib.PUBLIC.values() for n in names]
    assert len(names) == len(set(names))
    assert not any(n.startswith("_") for n in names)
    assert set(bnlib.__all__) == set(names) | (set(ORDER) - {"checks"})


def test_api_page_lists_exactly_the_public_names():
    text = (ROOT / "book" / "api.md").read_text()
    blocks = re.findall(r"\.\. automodule:: bnlib\.(\w+)\n   :members: ((?:.|\n)*?)\n```", text)
    page = {m: [n.strip() for n in members.replace("\n", " ").split(",")] for m, members in blocks}
    assert page == {m: list(n) for m, n in bnlib.PUBLIC.items() if n}


def _imports(module):
    """The bnlib modules and the names a module imports from its package."""
    tree = ast.parse((PKG / f"{module}.py").read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module is None:
                out += [(a.name, None) for a in node.names]
            else:
                out += [(node.module, a.name) for a in node.names]
    return out


@pytest.mark.parametrize("module", ORDER)
def test_imports_point_down_and_carry_no_underscore_name(module):
    for target, name in _imports(module):
        if target == "PUBLIC" or name == "PUBLIC":
            continue
        assert target in ORDER, f"{module} imports unknown bnlib.{target}"
        assert ORDER.index(target) < ORDER.index(module), f"{module} imports {target}: upward"
        assert not (name or "").startswith("_"), f"{module} imports {target}.{name}"
        assert not target.startswith("_")
