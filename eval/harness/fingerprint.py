"""Cache keys from the code a cached artefact depends on.

`code_fingerprint(["eval.harness.bank_models"])` hashes every project module that the named
modules import, transitively, found by reading their `import` statements (nothing is listed by
hand; imports under `if TYPE_CHECKING:` never run and do not count). A package's `__init__` counts
only where it is imported itself (`import methods`): the `__init__` that Python runs on the way to
`methods._train_recipe` imports every method file, none of which changes how a bank model trains.
Each module enters as its syntax tree with docstrings removed (`ast.dump`), so comments,
docstrings and formatting do not invalidate a bank that took an hour, while any change to code
does, a model definition included. Imports made at run time (`importlib.import_module`, as
`methods/__init__.py` does for every method file) are not followed: a run's key names its own
method's module explicitly.
"""

import ast
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _path(module: str, root: Path = ROOT) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _tree(module: str, root: Path) -> ast.Module:
    path = _path(module, root)
    if path is None:
        raise ValueError(f"no project module {module!r} under {root}")
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST):
    """Every node of `tree` except those under `if TYPE_CHECKING:` (type-only imports never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo += node.orelse
            continue
        todo += list(ast.iter_child_nodes(node))


def _imported(module: str, tree: ast.Module, root: Path) -> set[str]:
    """Project modules that `tree` (the source of `module`) imports, anywhere in it."""
    package = module if _path(module, root).name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            modules = {f"{base}.{a.name}" for a in node.names if _path(f"{base}.{a.name}", root) is not None}
            found |= modules or {base}  # `from pkg import module` names the module
    return {name for name in found if _path(name, root) is not None}


def import_closure(roots, root: Path = ROOT) -> list[str]:
    """The project modules `roots` depend on (themselves included), sorted; `root`: the project folder."""
    todo, seen = list(roots), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(_imported(name, _tree(name, root), root) - seen)
    return sorted(seen)


def _strip_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_fingerprint(roots, root: Path = ROOT) -> str:
    """12 hex digits over the docstring-free syntax trees of `roots`' import closure."""
    h = hashlib.sha256()
    for name in import_closure(roots, root):
        h.update(name.encode())
        h.update(ast.dump(_strip_docstrings(_tree(name, root))).encode())
    return h.hexdigest()[:12]
