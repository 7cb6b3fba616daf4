"""The layering rules of docs/architecture.md, section 3, checked on the source."""

import ast
from pathlib import Path

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
