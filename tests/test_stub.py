"""The committed type stub _core.pyi declares exactly what the extension exports."""

import ast
import inspect
from pathlib import Path

import fastopt
from fastopt import _core

STUB = Path(fastopt.__file__).with_name("_core.pyi")


def stub_names():
    tree = ast.parse(STUB.read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = None
        elif isinstance(node, ast.AnnAssign) and node.target.id != "__all__":
            names[node.target.id] = None
    return names


def test_stub_matches_extension():
    declared = stub_names()
    exported = {n for n in dir(_core) if not n.startswith("_")}
    assert set(declared) == exported
    for name, members in declared.items():
        obj = getattr(_core, name)
        if inspect.isclass(obj):
            actual = {n for n in vars(obj) if not n.startswith("_")}
            assert members - {"__init__"} == actual, name


def test_stub_names_every_registered_optimizer():
    """scripts/make_stub.py writes the registry's names as OptimizerName and a
    line per optimizer with its declared hyperparameters: a new optimizer
    needs a regenerated stub."""
    tree = ast.parse(STUB.read_text())
    literal = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                   and node.targets[0].id == "OptimizerName")
    names = [element.value for element in literal.slice.elts]
    assert names == sorted(_core.optimizers())
    text = STUB.read_text()
    for name, spec in _core.optimizers().items():
        hypers = ", ".join(f"{h[0]}={h[1]!r}" for h in spec.hypers if h[3] in ("hyper", "class_only"))
        assert f"#   {name}: {hypers};" in text, name
