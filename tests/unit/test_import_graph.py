"""No run-time import cycle inside smtpclient/.

The graph is built from the source with ``ast``, not by importing: every
``import``/``from ... import`` of an ``smtpclient`` module counts, including
those inside functions (a function-level import is still a run-time
dependency, merely a deferred one), except those under ``if TYPE_CHECKING:``,
which never run.  ``from smtpclient.pkg import name`` counts as an import of
``smtpclient.pkg.name`` when that is a module, else of ``smtpclient.pkg``.
Importing a submodule also runs its package's ``__init__``; that edge is
not counted, because every module would then "import" the package root and
the graph would say nothing about layering.

Run as a script (``python tests/unit/test_import_graph.py``) it prints each
cycle, one per line, and exits 1 when there is any.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "smtpclient"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Map each dotted module name under ``root`` to its file."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import node that can run: all of them except under ``if TYPE_CHECKING``."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the ``else:`` branch does run
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    # A package's own __init__ is its module: "." means the package itself.
    drop = node.level - 1 if is_package else node.level
    base = base[: len(base) - drop]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that ``module`` imports at run time."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _runtime_imports(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            source = _resolve_from(node, module, is_package)
            targets = []
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                targets.append(candidate if candidate in modules else source)
        for name in targets:
            # The longest prefix that is a module: "smtpclient.a.b.attr" -> a.b.
            target = name
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != module:
                found.add(target)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package modules it imports at run time."""
    modules = module_files(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan):
    the sets of modules that import each other, directly or not; sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        # Iterative Tarjan: recursion depth would follow the import chain.
        nonlocal counter
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(components)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest concrete cycle per strongly connected component, sorted."""
    return sorted(_one_cycle(graph, members) for members in components(graph))


def _one_cycle(graph: dict[str, set[str]], members: list[str]) -> list[str]:
    """A shortest cycle through the first member of a component (breadth-first)."""
    inside = set(members)
    start = members[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & inside):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return members  # unreachable for a strongly connected component


def describe(graph: dict[str, set[str]]) -> list[str]:
    """One line per cycle; for a knot larger than its shortest cycle, every
    import edge inside it too, so a reader sees each edge to cut."""
    lines = []
    knots = components(graph)
    for members in knots:
        lines.append(" -> ".join(_one_cycle(graph, members)))
        if len(members) > 2:
            inside = set(members)
            for name in members:
                for target in sorted(graph[name] & inside):
                    lines.append(f"    {name} -> {target}")
    if knots:
        count = sum(len(members) for members in knots)
        lines.append(f"({len(knots)} knot(s) of mutually importing modules, {count} modules)")
    return lines


# --- the test ---------------------------------------------------------------------


def test_the_graph_sees_the_package() -> None:
    graph = import_graph()
    assert "smtpclient.errors" in graph
    assert "smtpclient.session" in graph or "smtpclient.session.session" in graph
    # smtpclient.api imports the Session at run time: the walker sees edges.
    # (smtpclient/__init__ imports nothing at run time: its names are lazy.)
    assert graph["smtpclient.api"]


def test_type_checking_imports_are_excluded_and_function_imports_included(
    tmp_path: Path,
) -> None:
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import leaf\n")
    (package / "sub" / "leaf.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from smtpclient import b\n"
        "def later():\n    from smtpclient.sub import leaf\n"
    )
    (package / "b.py").write_text("import smtpclient.a\nfrom .sub.leaf import x\n")
    graph = import_graph(package)
    assert graph["smtpclient.a"] == {"smtpclient.sub.leaf"}
    assert graph["smtpclient.b"] == {"smtpclient.a", "smtpclient.sub.leaf"}
    assert graph["smtpclient.sub"] == {"smtpclient.sub.leaf"}
    assert cycles(graph) == []
    (package / "sub" / "leaf.py").write_text("def f():\n    import smtpclient.b\n")
    assert cycles(import_graph(package)) == [
        ["smtpclient.a", "smtpclient.sub.leaf", "smtpclient.b", "smtpclient.a"]
    ]


# The layers of the module map in smtpclient/__init__.py, top first: a module
# may import from its own layer and those after it.  Keyed by the first name
# under smtpclient (a package counts as a whole); modules not listed (new ones)
# are not checked until they are placed here and in the map.
LAYERS: tuple[tuple[str, ...], ...] = tuple(
    tuple(names.split())
    for names in (
        "__main__ cli contrib compat api demo",
        "mailer pool poolparts server retry delivery domain_delivery delivery_settings "
        "resolver dnslookup "
        "dnscache targets report ratelimit mtasts_fetch hostpolicy dane dkim",
        "session wire opening auth mechanisms transaction batch fastpath plan content "
        "outcome message body",
        "transport streams sockets eyeballs options",
        "tls timeouts results envelope credentials tlspolicy hostname certinfo saslprep "
        "netpolicy mtasts tlsresume scramcache headercheck",
        "protocol",
        "errors",
    )
)


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    for index, names in enumerate(LAYERS):
        if parts[1] in names:
            return index
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports that go up the module map (a lower layer using a higher one)."""
    found = []
    for module in sorted(graph):
        own = _layer(module)
        for target in sorted(graph[module]):
            theirs = _layer(target)
            if own is not None and theirs is not None and theirs < own:
                found.append(f"{module} (layer {own + 1}) -> {target} (layer {theirs + 1})")
    return found


def test_an_upward_import_is_reported() -> None:
    graph = {"smtpclient.errors.base": {"smtpclient.session"}, "smtpclient.session": set()}
    assert upward_imports(graph) == [
        "smtpclient.errors.base (layer 7) -> smtpclient.session (layer 3)"
    ]


def test_imports_go_down_the_module_map() -> None:
    assert upward_imports(import_graph()) == []


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph()
    assert not cycles(graph), "run-time import cycles:\n" + "\n".join(describe(graph))


if __name__ == "__main__":
    graph = import_graph()
    for line in describe(graph) or ["no run-time import cycle"]:
        print(line)
    upward = upward_imports(graph)
    for line in upward:
        print(f"upward import: {line}")
    sys.exit(1 if cycles(graph) or upward else 0)
