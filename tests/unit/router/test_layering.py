"""The router package is layered one way: base <- routers <- chain, with no import hidden in a function."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import govrpc.router

PACKAGE = pathlib.Path(govrpc.router.__file__).parent
ROUTERS = ("condition", "script", "tag", "local")


def _imports(module: str) -> tuple[set[str], list[str]]:
    """The govrpc modules ``module`` imports at its top level, and those it imports inside a function."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    top: set[str] = set()
    hidden: list[str] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("govrpc"):
                (hidden.append(child.module) if in_function else top.add(child.module))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("govrpc"):
                        (hidden.append(alias.name) if in_function else top.add(alias.name))
            visit(child, nested)

    visit(tree, False)
    return top, hidden


def test_no_router_module_imports_govrpc_inside_a_function() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        _, hidden = _imports(path.stem)
        assert not hidden, f"{path.name} imports {hidden} inside a function"


def test_base_knows_no_router_and_routers_know_no_chain() -> None:
    base, _ = _imports("base")
    assert {m for m in base if m.startswith("govrpc.router.")} <= {"govrpc.router.rule"}
    for name in ROUTERS:
        top, _ = _imports(name)
        assert "govrpc.router.chain" not in top, name
        assert "govrpc.router" not in top, name
    chain, _ = _imports("chain")
    assert {"govrpc.router.base", "govrpc.router.local", "govrpc.router.tag"} <= chain


def test_each_module_imports_first_on_its_own() -> None:
    """A cycle shows up as an ImportError when the module inside it is the first one imported."""
    for name in ("base", "rule", "chain", *ROUTERS):
        done = subprocess.run([sys.executable, "-c", f"import govrpc.router.{name}"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, f"govrpc.router.{name}: {done.stderr}"


def test_the_contract_and_its_helpers_live_in_base() -> None:
    from govrpc.router import base, chain, condition, script, tag

    assert govrpc.router.Router is base.Router and govrpc.router.Reads is base.Reads
    assert condition.Router is tag.Router is script.Router is chain.Router is base.Router
    assert {"Reads", "RouteFailed", "Router", "argument_text", "arguments_key", "typed_values"} <= set(base.__all__)
    assert "Router" not in chain.__all__
