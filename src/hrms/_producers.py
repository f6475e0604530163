"""Which domain topics a service writes, read from its source code (for the AsyncAPI document).

Services name the topic they write when they emit (``service.emit(session,
settings.user_topic, event)``, ``Journal(service, SOURCE, settings.leave_topic, ...)``,
``InventoryEventProducer(service, inventory_topic(topic))``), and the topics they read in
``@service.consumer(...)``. :func:`written_topics` parses a service's modules (its
module or every module of its package, plus the definitions it imports from other
``hrms.services`` modules, one level deep: of an imported class, the methods the service
calls) and collects, outside ``consumer(...)`` decorators:

* every read of an :class:`~hrms.service.settings.HrmsSettings` field named ``*_topic``
  (``settings.audit_topic``): that field's value in the service's settings;
* every call of a function named ``*_topic`` defined in ``hrms.services``
  (``inventory_topic(topic)``): its value when called without arguments, as
  ``build()`` without a ``topic`` does.

So the answer follows the code: a service that starts emitting to another domain's
topic shows it without a table to update. It is an over-approximation where a topic is
named but, on some path, nothing is emitted.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from hrms.service.settings import HrmsSettings

_PACKAGE = "hrms.services"


def _modules(name: str) -> list[ModuleType]:
    root = importlib.import_module(f"{_PACKAGE}.{name}")
    path = getattr(root, "__path__", None)
    if path is None:
        return [root]
    out = [root]
    for file in sorted(Path(next(iter(path))).glob("*.py")):
        if file.stem != "__init__":
            out.append(importlib.import_module(f"{root.__name__}.{file.stem}"))
    return out


def _tree(module: ModuleType) -> ast.Module:
    source = inspect.getsource(module)
    return ast.parse(source, filename=getattr(module, "__file__", None) or module.__name__)


def _is_consumer_decorator(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "consumer"
    )


class _Finder(ast.NodeVisitor):
    """Collects topic fields read and ``*_topic`` functions called, skipping consumers."""

    def __init__(self, module: ModuleType, settings: HrmsSettings) -> None:
        self.module = module
        self.settings = settings
        self.topics: dict[str, None] = {}

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            if not _is_consumer_decorator(decorator):
                self.visit(decorator)
        self.visit(node.args)
        for statement in node.body:
            self.visit(statement)

    visit_FunctionDef = _function  # noqa: N815 - ast.NodeVisitor's naming
    visit_AsyncFunctionDef = _function  # noqa: N815

    def visit_Attribute(self, node: ast.Attribute) -> None:
        field = node.attr
        if field.endswith("_topic") and field in HrmsSettings.model_fields:
            self.topics[str(getattr(self.settings, field))] = None
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id.endswith("_topic"):
            func: Any = getattr(self.module, node.func.id, None)
            if callable(func) and str(getattr(func, "__module__", "")).startswith(_PACKAGE):
                self.topics[str(func())] = None
        self.generic_visit(node)


def _imported(tree: ast.Module, own: str) -> Iterator[tuple[ModuleType, list[str]]]:
    """``(module, names)`` imported from other ``hrms.services`` modules."""
    for node in tree.body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.module is not None
            and node.module.startswith(f"{_PACKAGE}.")
            and not node.module.startswith(own)
        ):
            yield importlib.import_module(node.module), [a.name for a in node.names]


def _called(trees: list[ast.Module]) -> set[str]:
    """The method names the service's code calls (``self.journal.notify(...)``)."""
    return {
        node.func.attr
        for tree in trees
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }


def _visit_shared(finder: _Finder, node: ast.stmt, called: set[str]) -> None:
    if not isinstance(node, ast.ClassDef):
        finder.visit(node)
        return
    methods = {
        item.name: item
        for item in node.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    wanted = {n for n in methods if n in called or (n.startswith("__") and n.endswith("__"))}
    while True:  # and the methods those call (self.audit(...) inside record())
        more = (_called([ast.Module([methods[n]], [])]) for n in wanted)
        grown = wanted | (set().union(*more) & set(methods))
        if grown == wanted:
            break
        wanted = grown
    for item in node.body:
        if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) or item.name in wanted:
            finder.visit(item)


def written_topics(name: str, settings: HrmsSettings) -> list[str]:
    """The domain topics service ``name`` emits to, as named in its code (module docs).

    Args:
        name: the service (a key of :data:`hrms.services.PORTS`).
        settings: its settings (topic names may be renamed there).

    Returns:
        The topics, in the order the code first names them (before the layout: a
        domain topic stands for its event-type topics too).
    """
    own = f"{_PACKAGE}.{name}"
    found: dict[str, None] = {}
    modules = [(module, _tree(module)) for module in _modules(name)]
    called = _called([tree for _, tree in modules])
    for module, tree in modules:
        finder = _Finder(module, settings)
        finder.visit(tree)
        found.update(finder.topics)
        for other, names in _imported(tree, own):
            other_tree = _tree(other)
            shared = _Finder(other, settings)
            for node in other_tree.body:
                if (
                    isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                    and node.name in names
                ):
                    _visit_shared(shared, node, called)
            found.update(shared.topics)
    return list(found)
