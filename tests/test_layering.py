"""The package's layering contract, read from the source's import statements.

Layers, lowest first; a module may import its own layer and those below:

0. foundation: the version, the error classes, argument checks, atomic
   writes, and the leaf vocabularies (optimizers, latent-space helpers,
   callbacks and learning-rate schedules);
1. the compiled core (``_core``-level modules: kernels, engine, threads,
   the parameter layout, the build report);
2. data;
3. models (the estimators, their training, files and MPI);
4. the public facade ``fastvae`` (``__init__``), then the command line and
   the benchmark harness, which use the public API.

Every import counts, also those inside functions: a lazy import still ties
two modules together. And no two modules may import each other, through
any chain.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fastvae"

FOUNDATION = {
    "fastvae._version",
    "fastvae.exceptions",
    "fastvae._validation",
    "fastvae._atomic",
    "fastvae.optim",
    "fastvae.latent",
    "fastvae.callbacks",
    "fastvae.schedules",
}
CORE_PACKAGE = "fastvae._core"


def layer(module: str) -> int:
    if module in FOUNDATION:
        return 0
    if module == "fastvae":
        return 4
    top = module.split(".")[1]
    if top in ("data", "models", "cli", "bench", "__main__"):
        return {"data": 2, "models": 3}.get(top, 4)
    if module.startswith(CORE_PACKAGE) or top.startswith("_"):
        return 1
    if top in ("threads", "params", "config"):
        return 1
    raise AssertionError(f"{module}: no layer assigned; add it to test_layering.py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, list[Path]]:
    """Module name -> its files (a .pyx and its .pxd are one module)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*")):
        if "include" in path.relative_to(PACKAGE).parts[:1]:
            continue  # generated copies of the .pxd files
        if path.suffix in (".py", ".pyx", ".pxd"):
            found.setdefault(module_name(path), []).append(path)
    return found


KNOWN = set(sources())


def resolve(target: str) -> str:
    """The fastvae module `target` names: itself, or the closest parent."""
    while target not in KNOWN and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


_CYTHON_IMPORT = re.compile(
    r"^\s*(?:from\s+([\w.]+)\s+c?import\s+(.+)|c?import\s+([\w.]+))", re.M
)


def imports_of(name: str, path: Path) -> set[str]:
    """Every fastvae module that `path` imports (a `from package import x`
    counts as an import of the submodule x when x is one)."""
    pairs = []  # (module, imported names)
    text = path.read_text()
    if path.suffix == ".py":
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                pairs += [(a.name, []) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    pkg = name.split(".")
                    if not path.name == "__init__.py":
                        pkg = pkg[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                pairs.append((base, [a.name for a in node.names]))
    else:
        for m in _CYTHON_IMPORT.finditer(text):
            if m.group(1):
                names = m.group(2).strip("() \\").split(",")
                pairs.append((m.group(1), [n.split()[0] for n in names if n.strip()]))
            else:
                pairs.append((m.group(3), []))
    found = set()
    for module, names in pairs:
        if module != "fastvae" and not module.startswith("fastvae."):
            continue
        subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in KNOWN]
        found.update(subs if subs else [resolve(module)])
    found.discard(name)
    return found


GRAPH = {
    name: set().union(*(imports_of(name, path) for path in paths))
    for name, paths in sources().items()
}


def test_the_package_has_the_layered_subpackages():
    for sub in ("data", "models", "cli"):
        assert (PACKAGE / sub / "__init__.py").is_file(), sub
    assert (PACKAGE / "exceptions.py").is_file()
    assert (PACKAGE / "_version.py").is_file()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_imports_a_higher_layer(module):
    upward = sorted(t for t in GRAPH[module] if layer(t) > layer(module))
    assert not upward, f"{module} (layer {layer(module)}) imports " + ", ".join(
        f"{t} (layer {layer(t)})" for t in upward
    )


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with two or more modules."""
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles():
    cycles = find_cycles(GRAPH)
    assert not cycles, f"modules that import each other: {cycles}"


def test_the_checker_sees_imports_and_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]
    ]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    # The checks above cannot pass vacuously: the graph has the edges we know.
    assert "fastvae.data.batches" in GRAPH["fastvae.models.training"]
    assert "fastvae.models" in GRAPH["fastvae"]
    assert "fastvae._core._step" in GRAPH["fastvae"]  # the cimports of __init__.pxd
    assert (
        layer("fastvae.cli.main")
        > layer("fastvae.models.base")
        > layer("fastvae.data.shapes")
        > layer("fastvae._core._step")
        > layer("fastvae.exceptions")
    )


# Headers only other headers include: the SIMD dispatch macros and the
# bodies included once per precision or ISA level (*_impl.h).
C_INTERNAL = {"dispatch.h", "dispatch_each.h"}


def test_every_c_header_has_exactly_one_pxd_mirror():
    headers = sorted(
        h.name
        for h in (PACKAGE.parent / "src_c" / "fastvae").glob("*.h")
        if not h.name.endswith("_impl.h") and h.name not in C_INTERNAL
    )
    declared = {}
    for paths in sources().values():
        for path in paths:
            for h in re.findall(
                r'cdef extern from "fastvae/(\w+\.h)"', path.read_text()
            ):
                declared.setdefault(h, set()).add(path.name)
    problems = {h: sorted(declared.get(h, ())) for h in headers}
    problems = {h: files for h, files in problems.items() if len(files) != 1}
    assert not problems, f"headers without exactly one .pxd mirror: {problems}"
    # the mirrors are .pxd files (a .pyx would keep its declarations private)
    assert all(f.endswith(".pxd") for files in declared.values() for f in files)
