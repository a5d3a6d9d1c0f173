"""The package has no import cycle, counting every import: at the top of a module and inside its
functions, absolute and relative (resolved against the module's package).

Edges: ``import a.b`` -> ``a.b``; ``from a import b`` -> ``a.b`` when that is a module of the package
(or ``b`` is not a name ``a/__init__`` defines: a compiled submodule such as ``ssast_fast._C``), else ``a``. Importing ``a.b`` also runs ``a/__init__``, but that is not counted as an edge of the
importer: ``a/__init__`` importing its own submodules is then not a cycle, while a submodule that
imports names from its package's ``__init__`` (which imports it) is.
"""
from __future__ import annotations

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "ssast_fast")
PACKAGE = "ssast_fast"


def modules() -> dict[str, str]:
    """{dotted module name: path} of every ``.py`` file of the package."""
    out = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), os.path.join(ROOT, os.pardir))[:-3].split(os.sep)
                name = ".".join(rel[:-1] if rel[-1] == "__init__" else rel)
                out[name] = os.path.join(folder, f)
    return out


def defined_names(path: str) -> set[str]:
    """Names a module binds at its top level (assignments, imports, functions, classes)."""
    names = set()
    for node in ast.parse(open(path).read(), path).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def imports_of(name: str, path: str, known: dict[str, str]) -> set[str]:
    """The package modules ``name`` (file ``path``) imports anywhere in its source; ``known``: {module: path}."""
    is_pkg = path.endswith("__init__.py")
    pkg_parts = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(pkg_parts[:len(pkg_parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_module = sub in known or (base in known and alias.name not in defined_names(known[base]))
                found.add(sub if is_module else base)
    return {m for m in found if m in known and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_relative_imports_resolve(tmp_path):
    pkg = tmp_path / "p" / "q"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .m import f\n")
    (pkg / "m.py").write_text("from . import n\nfrom .. import r, VERSION, _C\ndef f():\n    from ..q.n import x\n")
    (pkg / "n.py").write_text("x = 1\n")
    (tmp_path / "p" / "__init__.py").write_text("VERSION = '1'\n")
    (tmp_path / "p" / "r.py").write_text("")
    known = {"p": tmp_path / "p" / "__init__.py", "p.q": pkg / "__init__.py", "p.q.m": pkg / "m.py",
             "p.q.n": pkg / "n.py", "p.r": tmp_path / "p" / "r.py"}
    assert imports_of("p.q", str(pkg / "__init__.py"), known) == {"p.q.m"}
    assert imports_of("p.q.m", str(pkg / "m.py"), known) == {"p.q.n", "p.r", "p"}  # VERSION: p; _C: not ours


def test_no_import_cycle_in_the_package():
    mods = modules()
    assert f"{PACKAGE}.train.backends" in mods and len(mods) > 40
    graph = {name: imports_of(name, path, mods) for name, path in mods.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
