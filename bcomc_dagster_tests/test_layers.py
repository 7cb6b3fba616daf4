"""The layering rules of docs/architecture.md, section 3, checked on the source."""

import ast
from pathlib import Path

import pytest

import bcomc_dagster

PACKAGE = Path(bcomc_dagster.__file__).parent
TOP = {"definitions.py", "driver.py", "cli.py"}  # with defs/: the only modules that run Dagster and stages


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        yield rel, ast.parse(path.read_text()), path.read_text().count("\n")


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_no_module_below_defs_imports_dagster_or_stages():
    lower = [
        (rel, _imports(tree)) for rel, tree, _ in _modules() if rel.parts[0] != "defs" and str(rel) not in TOP
    ]
    assert len(lower) > 40
    dagster = {
        str(rel): sorted(n for n in names if n.split(".")[0].startswith("dagster")) for rel, names in lower
    }
    assert {k: v for k, v in dagster.items() if v} == {}
    stages = [str(rel) for rel, names in lower if "bcomc_dagster.stages" in names and str(rel) != "stages.py"]
    assert stages == []


def test_a_module_over_300_lines_says_why():
    long = {str(rel): ast.get_docstring(tree) or "" for rel, tree, lines in _modules() if lines > 300}
    assert {rel for rel, doc in long.items() if "Over 300 lines" not in doc} == set()


def _module_name(rel: Path) -> str:
    parts = ["bcomc_dagster", *rel.with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports, at the top or in a function;
    imports under ``if TYPE_CHECKING:`` (never run) do not count."""
    trees = {_module_name(rel): tree for rel, tree, _ in _modules()}
    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        kept = ast.Module(body=[], type_ignores=[])
        kept.body = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in typing_only
        ]
        graph[name] = {m for m in _imports(kept) if m in trees and m != name}
    return graph


def test_no_import_cycles_in_the_package():
    import graphlib

    graph = _import_graph()
    wiring = graph["bcomc_dagster.registries"]
    assert len(graph) > 60 and "bcomc_dagster.registry" in graph["bcomc_dagster.training.sources"]
    assert "bcomc_dagster.datagen.extractive" in wiring  # imported in a function: it counts
    assert "bcomc_dagster.config" not in wiring  # imported under TYPE_CHECKING only: it does not
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        raise AssertionError(f"import cycle: {' -> '.join(e.args[1])}") from None
    # the check sees function-level imports: a planted one closes a cycle
    planted = {**graph, "bcomc_dagster.registry": {"bcomc_dagster.registries"}}
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(planted).prepare()
