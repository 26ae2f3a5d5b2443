"""No import cycles among the package's modules: the graph of every `import` and `from ... import`
statement in engine/, server/, cli/, tools/, benchmarks/ and ovchat/ (those inside functions too,
read with ast), resolved to module names, has no strongly connected component of two or more modules.
The layers hold (docs/architecture.md): the runtime imports nothing above it, the server only the
runtime, and only the entry point (ovchat/__main__.py) imports the CLI, the one place that parses
flags, prints or prompts. The package never imports the studies or the tests, nor the tests a
study, and every module of benchmarks/ serves `ovchat bench` (a one-off study belongs in studies/).
No module is imported or run."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"ovchat": "ovchat", "ovchat.engine": "engine", "ovchat.server": "server", "ovchat.tools": "tools",
            "ovchat.benchmarks": "benchmarks", "ovchat.cli": "cli"}  # as pyproject.toml's package-dir maps them

def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):  # subpackages too (engine/tool_parsers/)
            parts = [package, *path.relative_to(REPO / folder).with_suffix("").parts]
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(name: str, path: Path) -> set[str]:
    """Absolute names of what the module's import statements name, anywhere in the module."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names |= {f"{base}.{alias.name}" for alias in node.names}  # import_graph falls back to base
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (`from pkg import name` counts as `pkg.name`
    where that is a module, else as `pkg`)."""
    found = modules()
    graph = {}
    for name, path in found.items():
        edges = set()
        for target in imported_names(name, path):
            while target and target not in found:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset]:
    """Strongly connected components of two or more modules (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), set()

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_inside_functions_and_relative_ones():
    graph = import_graph()
    assert "ovchat.engine" in graph["ovchat"]                          # from . import engine as _engine
    assert "ovchat.benchmarks.cli" in graph["ovchat.cli.main"]         # inside build_parser(): from ..benchmarks import cli
    assert "ovchat.benchmarks.scenarios" in graph["ovchat.benchmarks.server_scenario"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {frozenset("abc")}


def test_no_import_cycles():
    assert cycles(import_graph()) == set()


def test_the_runtime_imports_nothing_of_the_server_tools_or_benchmarks():
    graph = import_graph()
    runtime = {name for name in graph if name.startswith("ovchat.engine")}
    for name in runtime:
        assert graph[name] <= runtime, (name, graph[name] - runtime)


def test_the_server_imports_the_runtime_and_nothing_else_of_the_package():
    graph = import_graph()
    allowed = {name for name in graph if name.startswith(("ovchat.engine", "ovchat.server"))}
    for name in (name for name in graph if name.startswith("ovchat.server")):
        assert graph[name] <= allowed, (name, graph[name] - allowed)


def test_only_the_entry_point_imports_the_cli():
    graph = import_graph()
    for name, edges in graph.items():
        if not name.startswith("ovchat.cli") and name != "ovchat.__main__":
            assert not {edge for edge in edges if edge.startswith("ovchat.cli")}, name
    assert "ovchat.cli.main" in graph["ovchat.__main__"]


def test_the_runtime_and_the_server_parse_no_flags_print_nothing_and_ask_nothing():
    found = []
    for name, path in modules().items():
        if not name.startswith(("ovchat.engine", "ovchat.server")):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "input"):
                found.append(f"{name}:{node.lineno} {node.func.id}()")
        if "argparse" in imported_names(name, path):
            found.append(f"{name}: imports argparse")
    assert not found, "the CLI's job (cli/): " + ", ".join(found)


def test_the_package_imports_neither_studies_nor_tests():
    for name, path in modules().items():
        outside = {n for n in imported_names(name, path) if n.split(".")[0] in ("studies", "tests")}
        assert not outside, (name, outside)


def test_the_tests_import_no_study():
    for path in sorted((REPO / "tests").glob("*.py")):
        outside = {n for n in imported_names(f"tests.{path.stem}", path) if n.split(".")[0] == "studies"}
        assert not outside, (path.name, outside)


def test_every_module_of_benchmarks_serves_ovchat_bench():
    # Reached from the command by imports, or started as a child process by name
    # ("ovchat.benchmarks.worker" given to benchmarks/child.py); a module reached by neither is a study.
    found, graph = modules(), import_graph()
    started = {node.value for name in found if name.startswith("ovchat.benchmarks")
               for node in ast.walk(ast.parse(found[name].read_text())) if isinstance(node, ast.Constant)
               and isinstance(node.value, str) and node.value in found}
    reached, todo = set(), ["ovchat.benchmarks.cli", "ovchat.benchmarks.__main__", *started]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += graph[name]
    assert "ovchat.benchmarks.server_baseline" in started
    unreached = {name for name in found if name.startswith("ovchat.benchmarks.")} - reached
    assert not unreached, f"not part of `ovchat bench`: move to studies/ ({sorted(unreached)})"
