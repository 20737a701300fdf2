"""Kaggle submission notebooks: a registered method → a self-contained notebook for the test phase.

    python main.py -m my_method -p test                  # writes submissions/my_method/
    python main.py -m sibl -p test --set sparsity=0.95 --kaggle-user alice --push

The competition's test phase runs a notebook, offline, against the hidden CASIA-SURF data. The
notebook is made from `run-unlearn-finetune.ipynb` (the competition's template, in this repository)
by replacing its `unlearning` cell with everything the method needs, pasted as source text:

1. `methods/BaseMethod.py` (the contract and the parameter checks) and `methods/_registry.py` (the
   registry), stdlib + torch only;
2. every project module the method's file imports, transitively (`from methods.X import name`,
   at the top of the file, on its own lines; parenthesized over several lines as ruff wraps it), each once, in
   dependency order, with those import lines
   removed (an `import a as b` becomes `b = a`) and third-party imports kept;
3. the method's own file;
4. `METHOD_KEY`, `METHOD_PARAMS` (the resolved `Params`, with `--set` overrides; `seed` stays None
   unless set, so the 512 runs differ) and, for a method that overrides `configure` (`retrain`), the
   `full` preset's training `RECIPE`; then `def unlearning(net, retain_loader, forget_loader, val_loader)`,
   which builds the method and calls `run`.

Refused with `NotebookError` (a message naming the file and line): imports of packages Kaggle's offline
image may lack (allowed: the standard library and `ALLOWED_THIRD_PARTY`), imports of `data`, `eval`,
`main`, `notebook_utils` or any other project module, project imports that are not top-level
`from methods.<module> import name` statements on their own lines, import cycles, names defined twice across the pasted
files or clashing with the template's, `__file__`, `if __name__ == "__main__":` blocks, and syntax
newer than Kaggle's Python (3.10). The generated notebook imports nothing from this project.

`write_submission` writes the notebook and a `kernel-metadata.json` for the kaggle CLI, and with
`push=True` runs `kaggle kernels push` (the CLI authenticates itself; nothing here touches credentials
or imports `kaggle`) and prints the `kaggle competitions submit ... -k ... -v ...` command.
"""

import ast
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from eval.io import write_text

ROOT = Path(__file__).resolve().parent
TEMPLATE = ROOT / "run-unlearn-finetune.ipynb"
COMPETITION = "neurips-2023-machine-unlearning"
KAGGLE_DATA_DIR = "/kaggle/input/neurips-2023-machine-unlearning"
KAGGLE_OUTPUT_DIR = "/kaggle/tmp"
N_CHECKPOINTS = 512
PLACEHOLDER_USER = "YOUR-KAGGLE-USERNAME"
VERSION_PLACEHOLDER = "<VERSION>"
#: third-party top-level modules a method may import (besides the standard library): all are in
#: Kaggle's Python image, which has no internet in the test phase.
ALLOWED_THIRD_PARTY = frozenset({"torch", "torchvision", "numpy", "scipy", "sklearn", "pandas", "PIL", "tqdm"})
#: top-level names of this project that generated code must never import.
PROJECT_MODULES = frozenset({"methods", "data", "eval", "main", "notebook_utils", "tests"})
KAGGLE_PYTHON = (3, 10)  # the competition's image ran Python 3.10
BASE_MODULE = "methods.BaseMethod"
TRAINING_MODULE = "methods._train_recipe"  # holds `Recipe`, for methods that override `configure`
RECIPE_PRESET = "kaggle"  # the test-phase preset whose recipe `configure` receives in a notebook
PARAMETER_NAMES = ("N_CHECKPOINTS", "DATA_DIR", "OUTPUT_DIR", "REQUIRE_GPU")
#: names the generated unlearning cell itself binds.
_CELL_NAMES = frozenset({"METHOD_KEY", "METHOD_PARAMS", "RECIPE", "unlearning"})


class NotebookError(Exception):
    """A user-facing failure: the message says what is wrong and what to do."""


# ---------------------------------------------------------------------------------------------
# Inlining: the method's file and its project dependencies as one block of source


@dataclasses.dataclass
class InlinedModule:
    """One project module ready to paste: `source` has its project imports removed."""

    name: str  # dotted, e.g. "methods._common"
    path: Path
    source: str
    deps: list[str]  # project modules it imports, in order of appearance
    future: list[str]  # its `from __future__ import ...` lines (hoisted to the cell's top)
    bindings: dict[str, str]  # top-level name -> "def" | "class" | "assign" | "import:<origin>"


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _module_path(name: str, root: Path) -> Path:
    return root.joinpath(*name.split(".")).with_suffix(".py")


def _project_names(root: Path) -> set[str]:
    """Top-level importable names of the project at `root` (packages and modules), plus the fixed ones."""
    names = set(PROJECT_MODULES)
    if root.is_dir():
        for p in root.iterdir():
            if p.suffix == ".py":
                names.add(p.stem)
            elif p.is_dir() and (p / "__init__.py").exists():
                names.add(p.name)
    return names


def _allowed(top: str) -> bool:
    return top in ALLOWED_THIRD_PARTY or top in sys.stdlib_module_names


def _top_level_bindings(statements) -> dict[str, str]:
    """Names that module-level `statements` bind, descending into if/for/while/with/try but not into defs.

    Values: "def", "class", "assign", or "import:<module>.<name>" (so that `import torch.nn as nn` and
    `from torch import nn` compare equal). `from methods.X import name` without `as` binds nothing here:
    the name is the one X defines, pasted once. `from __future__` imports bind nothing.
    """
    out: dict[str, str] = {}

    def add(name, kind):
        if name not in out or out[name].startswith("import:"):  # a def/assign wins over an import
            out[name] = kind

    def targets(node):
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                add(n.id, "assign")

    def visit(stmts):
        for s in stmts:
            if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
                add(s.name, "def")
                continue
            if isinstance(s, ast.ClassDef):
                add(s.name, "class")
                continue
            if isinstance(s, ast.Import):
                for a in s.names:
                    add(a.asname, f"import:{a.name}") if a.asname else add(
                        a.name.split(".")[0], f"import:{a.name.split('.')[0]}"
                    )
            elif isinstance(s, ast.ImportFrom) and not s.level and s.module != "__future__":
                project = (s.module or "").split(".")[0] == "methods"
                for a in s.names:
                    if a.name != "*" and (a.asname or not project):
                        add(a.asname or a.name, f"import:{s.module}.{a.name}")
            elif isinstance(s, ast.Assign):
                for t in s.targets:
                    targets(t)
            elif isinstance(s, (ast.AnnAssign, ast.AugAssign)):
                targets(s.target)
            elif isinstance(s, (ast.For, ast.AsyncFor)):
                targets(s.target)
            elif isinstance(s, (ast.With, ast.AsyncWith)):
                for item in s.items:
                    if item.optional_vars is not None:
                        targets(item.optional_vars)
            for n in ast.walk(s):  # `(x := ...)` and except-as at module level bind there too
                if isinstance(n, ast.NamedExpr):
                    targets(n.target)
                elif isinstance(n, ast.ExceptHandler) and n.name:
                    add(n.name, "assign")
            for field in ("body", "orelse", "finalbody"):
                visit(getattr(s, field, []) or [])
            for handler in getattr(s, "handlers", []) or []:
                visit(handler.body)

    visit(statements)
    return out


def _is_main_guard(stmt) -> bool:
    return (
        isinstance(stmt, ast.If)
        and isinstance(stmt.test, ast.Compare)
        and any(isinstance(n, ast.Name) and n.id == "__name__" for n in ast.walk(stmt.test))
    )


def parse_module(name: str, root: Path = ROOT) -> InlinedModule:
    """Read project module `name` (e.g. "methods._common"), check its imports, drop the project ones."""
    path = _module_path(name, root)
    rel = _rel(path, root)
    if not path.is_file():
        raise NotebookError(
            f"cannot inline {name}: {rel} not found (project imports must name a module "
            f"file, `from methods.<module> import name`)"
        )
    text = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise NotebookError(f"{rel}:{exc.lineno}: syntax error: {exc.msg}") from None
    try:
        ast.parse(text, filename=str(path), feature_version=KAGGLE_PYTHON)
    except SyntaxError as exc:
        raise NotebookError(
            f"{rel}:{exc.lineno}: uses syntax newer than Python "
            f"{'.'.join(map(str, KAGGLE_PYTHON))}, the competition image's ({exc.msg})"
        ) from None
    project = _project_names(root)
    lines = text.splitlines(keepends=True)
    replace: dict[int, str] = {}  # 0-based line -> replacement text
    deps: list[str] = []
    future: list[str] = []
    top = set(map(id, tree.body))
    fix = (
        "project code must be imported with a top-level "
        "`from methods.<module> import name[, name ...]` statement on its own lines"
    )

    def own_line(node) -> bool:
        rest = lines[node.end_lineno - 1][node.end_col_offset :].strip()
        return node.col_offset == 0 and (not rest or rest.startswith("#"))

    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Name) and node.id == "__file__":
            raise NotebookError(
                f"{where}: uses __file__, which does not exist in a notebook (methods must not read files by path)"
            )
        if isinstance(node, ast.Import):
            for a in node.names:
                head = a.name.split(".")[0]
                if head in project:
                    raise NotebookError(
                        f"{where}: `import {a.name}`: {fix}"
                        if head == "methods"
                        else f"{where}: imports project module {a.name!r}; methods may import only "
                        f"from `methods` (the notebook cannot carry data/, eval/ or main.py)"
                    )
                if not _allowed(head):
                    raise _third_party_error(where, head)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise NotebookError(
                    f"{where}: relative import `from {'.' * node.level}{node.module or ''} import ...`: {fix}"
                )
            head = (node.module or "").split(".")[0]
            if node.module == "__future__":
                if id(node) not in top or not own_line(node):
                    raise NotebookError(f"{where}: put `from __future__ import ...` on one line at the top")
                future.append(lines[node.lineno - 1].strip())
                replace[node.lineno - 1] = ""
            elif head == "methods":
                if node.module == "methods":
                    raise NotebookError(f"{where}: `from methods import ...`: {fix}")
                if id(node) not in top or not own_line(node):
                    raise NotebookError(
                        f"{where}: `from {node.module} import ...` shares its line or sits inside a block: {fix}"
                    )
                if any(a.name == "*" for a in node.names):
                    raise NotebookError(f"{where}: `from {node.module} import *`: name what you import")
                if node.module not in deps:
                    deps.append(node.module)
                replace[node.lineno - 1] = "".join(
                    f"{a.asname} = {a.name}\n" for a in node.names if a.asname and a.asname != a.name
                )
                replace.update(dict.fromkeys(range(node.lineno, node.end_lineno), ""))  # its other lines
            elif head in project:
                raise NotebookError(
                    f"{where}: imports project module {node.module!r}; methods may import "
                    f"only from `methods` (the notebook cannot carry data/, eval/ or main.py)"
                )
            elif not _allowed(head):
                raise _third_party_error(where, head)
    for stmt in tree.body:
        if _is_main_guard(stmt):
            raise NotebookError(
                f"{rel}:{stmt.lineno}: an `if __name__ == ...` block would run inside the "
                f"notebook (where __name__ is '__main__'); move it out of methods/"
            )
    kept: list[str] = []
    skip: set[int] = set()
    for i, line in enumerate(lines):
        if i in skip:
            continue
        if i not in replace:
            kept.append(line)
        elif replace[i]:
            kept.append(replace[i])
        elif kept and not kept[-1].strip() and i + 1 < len(lines) and not lines[i + 1].strip():
            skip.add(i + 1)  # a removed import between blank lines: drop one of them too
    source = "".join(kept)
    bindings = _top_level_bindings(tree.body)
    return InlinedModule(name, path, source, deps, future, bindings)


def _third_party_error(where: str, head: str) -> NotebookError:
    return NotebookError(
        f"{where}: imports {head!r}, which Kaggle's offline notebook image may not have (internet is off in "
        f"the test phase, so it cannot be installed). Allowed: the standard library and "
        f"{', '.join(sorted(ALLOWED_THIRD_PARTY))}. Remove the import or copy the code you need into methods/."
    )


def collect_modules(module: str, root: Path = ROOT, extra: tuple[str, ...] = ()) -> list[InlinedModule]:
    """`methods/BaseMethod.py`, `extra` modules, and `module` with its project imports, dependencies first."""
    order: list[InlinedModule] = []
    done: set[str] = set()
    active: list[str] = []

    def visit(name: str):
        if name in done:
            return
        if name in active:
            cycle = active[active.index(name) :] + [name]
            raise NotebookError(
                "import cycle between project modules: " + " -> ".join(_rel(_module_path(n, root), root) for n in cycle)
            )
        active.append(name)
        mod = parse_module(name, root)
        for dep in mod.deps:
            visit(dep)
        active.pop()
        done.add(name)
        order.append(mod)

    for name in (BASE_MODULE, *extra, module):
        visit(name)
    return order


def _check_collisions(mods: list[InlinedModule], reserved: dict[str, str], root: Path) -> None:
    """Refuse a name bound by two pasted files, or by one and the template, unless it is the same import."""
    owner: dict[str, tuple[str, str]] = {n: ("the notebook template", k) for n, k in reserved.items()}
    for mod in mods:
        for name, kind in mod.bindings.items():
            if name.startswith("__") and name.endswith("__"):
                continue
            if name in owner:
                other, other_kind = owner[name]
                if kind == other_kind and kind.startswith("import:"):
                    continue  # the same object imported twice

                def what(k):
                    return "imports it from " + k[7:] if k.startswith("import:") else f"defines it ({k})"

                raise NotebookError(
                    f"name clash on {name!r}: {_rel(mod.path, root)} {what(kind)} and {other} "
                    f"{what(other_kind)}; all pasted files share one namespace in the notebook, "
                    f"so rename one of them"
                )
            owner[name] = (_rel(mod.path, root), kind)


def inline_source(
    module: str, root: Path = ROOT, extra: tuple[str, ...] = (), reserved: dict[str, str] | None = None
) -> tuple[str, list[InlinedModule]]:
    """The pasted source of `module` and its project dependencies, and the modules in pasting order."""
    mods = collect_modules(module, root, extra)
    _check_collisions(mods, reserved or {}, root)
    future = []
    for m in mods:
        future += [f for f in m.future if f not in future]
    parts = future[:]
    for m in mods:
        rel = _rel(m.path, root)
        body = m.source.strip("\n")
        parts.append(f"\n\n# {'=' * 20} {rel} {'=' * max(3, 75 - len(rel))}\n{body}")
    return "\n".join(parts).lstrip("\n") + "\n", mods


# ---------------------------------------------------------------------------------------------
# Baking values into source


def py_literal(value, where: str = "value") -> str:
    """Python source for `value` (None, bool, int, float incl. inf/nan, str, and lists/tuples/dicts of them)."""
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"float({str(value)!r})"
    if isinstance(value, list):
        return "[" + ", ".join(py_literal(v, where) for v in value) + "]"
    if isinstance(value, tuple):
        items = [py_literal(v, where) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py_literal(k, where)}: {py_literal(v, where)}" for k, v in value.items()) + "}"
    raise NotebookError(
        f"{where}: cannot write {value!r} (a {type(value).__name__}) into the notebook; "
        f"hyperparameters must be None, bool, int, float, str, or lists/tuples/dicts of them"
    )


def resolve_params(key: str, overrides=None):
    """(method class, resolved Params dict) for `key` with `overrides` (a dict or ["k=v", ...])."""
    import methods

    try:
        cls = methods.get_method(key)
    except ValueError as exc:
        raise NotebookError(str(exc)) from None
    try:
        parsed = methods.parse_overrides(cls, overrides or {})
        params = cls.make_params(**parsed)
    except (ValueError, TypeError) as exc:
        raise NotebookError(f"method {key!r}: {exc}") from None
    values = {f.name: getattr(params, f.name) for f in dataclasses.fields(params) if f.init}
    return cls, values


def _overrides_configure(cls) -> bool:
    from methods.BaseMethod import BaseMethod

    return getattr(cls, "configure", None) is not BaseMethod.configure


def method_cell_source(
    key: str, overrides=None, reserved: dict[str, str] | None = None, recipe_preset: str = RECIPE_PRESET
) -> str:
    """The source of the generated `unlearning` cell for method `key` (see the module docstring)."""
    cls, values = resolve_params(key, overrides)
    module = cls.__module__
    if not module.startswith("methods."):
        raise NotebookError(
            f"method {key!r} is defined in {module!r}, outside methods/; only methods/ files "
            f"can be carried into a notebook"
        )
    configure = _overrides_configure(cls)
    extra = (TRAINING_MODULE,) if configure else ()
    code, mods = inline_source(module, ROOT, extra, reserved)
    rel = _rel(_module_path(module, ROOT), ROOT)
    lines = [f"{k!r}: {py_literal(v, f'{key}.Params.{k}')}," for k, v in values.items()]
    params_src = "{\n" + "".join(f"    {line}\n" for line in lines) + "}" if lines else "{}"
    head = (
        f"# Generated by the unlearning kit (notebook_utils.py) from {rel}: method {key!r}.\n"
        f"# Do not edit here: change {rel} (or pass --set key=value) and run\n"
        f"#     python main.py -m {key} -p test\n"
        f"# Below: {', '.join(_rel(m.path, ROOT) for m in mods)} pasted whole, project imports removed;\n"
        f"# then the baked hyperparameters and the `unlearning` function the loop below calls.\n"
    )
    tail = [
        f"\n\n# {'=' * 20} entry point {'=' * 67}",
        f"METHOD_KEY = {key!r}",
        f"METHOD_PARAMS = {params_src}"
        + ("  # seed None: fresh randomness in every run" if values.get("seed", 0) is None else ""),
    ]
    call_configure = ""
    if configure:
        from data.presets import get_preset

        recipe = get_preset(recipe_preset).recipe
        fields = ", ".join(f"{k}={py_literal(v, 'Recipe.' + k)}" for k, v in recipe.to_dict().items())
        tail.append(
            f"# `{key}` overrides configure(): it gets the `{recipe_preset}` preset's training recipe "
            f"(the loaders' batch size, 64, wins over batch_size here).\nRECIPE = Recipe({fields})"
        )
        call_configure = "    method.configure(RECIPE)\n"
    tail.append(
        "\n\ndef unlearning(net, retain_loader, forget_loader, val_loader):\n"
        f'    """{cls.__name__} ({key!r}): {cls.summary()}\n\n'
        "    Changes `net` in place and leaves it in eval mode. Batches are dicts: `image` (float, 0-255, not\n"
        '    normalized) and `age_group` (10 classes)."""\n'
        "    method = get_method(METHOD_KEY)(**METHOD_PARAMS)\n"
        f"{call_configure}"
        "    method.run(net, retain_loader, forget_loader, val_loader)\n"
        "    net.eval()\n"
    )
    return head + code + "\n".join(tail)


# ---------------------------------------------------------------------------------------------
# The notebook


def _cell(nb, tag: str):
    found = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    if len(found) != 1:
        raise NotebookError(f"{_rel(TEMPLATE, ROOT)}: expected exactly one cell tagged {tag!r}, found {len(found)}")
    return found[0]


def load_template(path: Path = TEMPLATE):
    """The competition template as a NotebookNode."""
    if not Path(path).is_file():
        raise NotebookError(f"notebook template {path} not found")
    return nbformat.read(str(path), as_version=4)


def set_parameters(nb, **values) -> None:
    """Rewrite assignments in the cell tagged `parameters`, e.g. set_parameters(nb, N_CHECKPOINTS=2)."""
    cell = _cell(nb, "parameters")
    src = cell.source
    for name, value in values.items():
        pattern = re.compile(rf"^{re.escape(name)}\s*=.*?(\s+#.*)?$", re.M)
        if not pattern.search(src):
            raise NotebookError(f"the parameters cell has no {name} (it has: {', '.join(PARAMETER_NAMES)})")
        literal = py_literal(value, name)
        src = pattern.sub(lambda m: f"{name} = {literal}{m.group(1) or ''}", src, count=1)
    cell.source = src


def imported_project_modules(nb) -> set[str]:
    """Top-level project names imported anywhere in the notebook's code cells (must be empty)."""
    found = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import):
                heads = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                heads = [(node.module or "").split(".")[0]] if not node.level else ["<relative>"]
            else:
                continue
            found |= {h for h in heads if h in _project_names(ROOT) or h == "<relative>"}
    return found


def check_notebook(nb) -> None:
    """Validate, compile every code cell (for Kaggle's Python too) and refuse project imports."""
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise NotebookError(f"generated notebook is not valid nbformat: {exc.message}") from None
    if nb.metadata.get("kernelspec", {}).get("name") != "python3" or "language_info" not in nb.metadata:
        raise NotebookError(
            "notebook metadata needs kernelspec (name python3) and language_info: papermill, "
            "which runs it on Kaggle, fails without them"
        )
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            try:
                compile(cell.source, f"<cell {i} ({cell.get('id')})>", "exec")
                ast.parse(cell.source, feature_version=KAGGLE_PYTHON)
            except SyntaxError as exc:
                raise NotebookError(f"cell {i} ({cell.get('id')}) line {exc.lineno}: {exc.msg}") from None
    bad = imported_project_modules(nb)
    if bad:
        raise NotebookError(
            f"generated notebook imports project code ({', '.join(sorted(bad))}); it must be self-contained"
        )


def build_notebook(
    key: str,
    overrides=None,
    *,
    n_checkpoints: int = N_CHECKPOINTS,
    data_dir: str = KAGGLE_DATA_DIR,
    output_dir: str = KAGGLE_OUTPUT_DIR,
    require_gpu: bool = True,
    recipe_preset: str = RECIPE_PRESET,
):
    """The submission notebook for method `key` with `overrides` (validated, checked, not written).

    `recipe_preset` names the preset whose training recipe a method that overrides `configure`
    (`retrain`) receives."""
    nb = load_template()
    unlearning = _cell(nb, "unlearning")
    reserved: dict[str, str] = {n: "assign" for n in _CELL_NAMES}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell is not unlearning:
            reserved.update(_top_level_bindings(ast.parse(cell.source).body))
    unlearning.source = method_cell_source(key, overrides, reserved, recipe_preset)
    cls, values = resolve_params(key, overrides)
    rel = _rel(_module_path(cls.__module__, ROOT), ROOT)
    rows = "\n".join(f"| `{k}` | `{py_literal(v).replace('|', '¦')}` |" for k, v in values.items())
    notes = _cell(nb, "method-notes")
    notes.source = (
        f"## Unlearning: `{key}`\n\n{cls.summary().rstrip('.')} (`{rel}`"
        f"{'; a reference row, not a valid competition entry' if not cls.valid_entry else ''}).\n\n"
        f"The next cell was generated by the starter kit (`python main.py -m {key} -p test`): it holds "
        f"`{rel}` and every project file it uses, pasted whole, with these hyperparameters baked in:\n\n"
        f"| parameter | value |\n|---|---|\n{rows}\n\n"
        "The hidden data is **unnormalized faces**: batches are dicts whose `image` is a float tensor in "
        "0–255 (not CIFAR-10, no normalization) and whose `age_group` holds one of 10 labels. Methods read "
        "them with `unpack` (which accepts these dicts) and must not assume normalized inputs."
    )
    set_parameters(
        nb,
        N_CHECKPOINTS=int(n_checkpoints),
        DATA_DIR=str(data_dir),
        OUTPUT_DIR=str(output_dir),
        REQUIRE_GPU=bool(require_gpu),
    )
    nb.metadata["unlearning_kit"] = {"method": key, "source": rel}
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    check_notebook(nb)
    return nb


class NotebookFailed(NotebookError):
    """The notebook raised while running; `cell` is the failing cell's id and `error` its last line."""

    def __init__(self, cell: str, error: str):
        super().__init__(f"the notebook failed in cell {cell!r}: {error}")
        self.cell, self.error = cell, error


def execute_notebook(
    nb, data_dir, output_dir, work_dir, *, n_checkpoints: int, timeout: int = 7200, threads: int | None = None
):
    """Run `nb` with nbclient as Kaggle would (no GPU required), in `work_dir`; returns the executed notebook.

    The parameters cell is set to `n_checkpoints`, `data_dir` and `output_dir` (made absolute: the
    kernel runs in `work_dir`); the project is not importable from the kernel (PYTHONPATH removed);
    `threads` sets the kernel's OMP_NUM_THREADS. Raises `NotebookFailed` naming the cell and the error.
    """
    import nbclient
    from nbclient.exceptions import CellExecutionError

    data_dir, output_dir, work_dir = (Path(d).resolve() for d in (data_dir, output_dir, work_dir))
    set_parameters(
        nb, N_CHECKPOINTS=int(n_checkpoints), DATA_DIR=str(data_dir), OUTPUT_DIR=str(output_dir), REQUIRE_GPU=False
    )
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(work_dir)}}
    )
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        failed = next(
            (
                c
                for c in nb.cells
                if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", []))
            ),
            None,
        )
        raise NotebookFailed(
            failed.get("id", "?") if failed is not None else "?", f"{exc.ename}: {exc.evalue}"
        ) from None
    return nb


def cell_text_output(nb, cell_id: str) -> str:
    """The printed text of one executed cell."""
    cell = next((c for c in nb.cells if c.get("id") == cell_id), None)
    return "".join(o.get("text", "") for o in (cell.get("outputs", []) if cell else []) if o.get("name") == "stdout")


# ---------------------------------------------------------------------------------------------
# Kaggle metadata, push and submit


def kernel_slug(key: str) -> str:
    """Kernel slug (and title) for method `key`: `unlearning-<key>` in [a-z0-9-], 5 to 50 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"unlearning-{key}".lower()).strip("-")
    return slug[:50].rstrip("-")


def kaggle_username(explicit: str | None = None) -> str | None:
    """--kaggle-user, else $KAGGLE_USERNAME, else `username` in the Kaggle config (kaggle.json); else None."""
    user = explicit or os.environ.get("KAGGLE_USERNAME") or None
    if user is None:
        candidates = []
        if os.environ.get("KAGGLE_CONFIG_DIR"):
            candidates.append(Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json")
        candidates += [Path.home() / ".kaggle" / "kaggle.json", Path.home() / ".config" / "kaggle" / "kaggle.json"]
        for path in candidates:
            try:
                user = json.loads(path.read_text()).get("username") or None
            except (OSError, ValueError, AttributeError):
                continue
            if user:
                break
    if user is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", str(user)):
        raise NotebookError(f"invalid Kaggle user name {user!r} (letters, digits, '-', '_' and '.' only)")
    return user


def kernel_metadata(key: str, user: str | None, code_file: str, machine_shape: str | None = None) -> dict:
    """The kernel-metadata.json the kaggle CLI reads when pushing."""
    slug = kernel_slug(key)
    meta = {
        "id": f"{user or PLACEHOLDER_USER}/{slug}",
        "title": slug,  # identical to the slug, so the CLI does not warn that they disagree
        "code_file": code_file,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": False,  # code competitions run offline
        "dataset_sources": [],
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
        "model_sources": [],
    }
    if machine_shape:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", machine_shape):
            raise NotebookError(f"invalid --machine-shape {machine_shape!r} (e.g. NvidiaTeslaT4, NvidiaL4)")
        meta["machine_shape"] = machine_shape
    return meta


def submit_command(kernel_id: str, version, key: str) -> str:
    return f'kaggle competitions submit {COMPETITION} -f submission.zip -k {kernel_id} -v {version} -m "{key}"'


def push_kernel(out_dir: Path, timeout: int = 600) -> tuple[str | None, str]:
    """`kaggle kernels push -p out_dir`; returns (version or None, the CLI's output). NotebookError on failure."""
    exe = shutil.which("kaggle")
    if exe is None:
        raise NotebookError(
            f"--push needs the kaggle CLI: `pip install kaggle`, then authenticate (`kaggle auth login`, or an "
            f"API token from kaggle.com/settings saved as ~/.kaggle/kaggle.json), then rerun, or push by hand: "
            f"kaggle kernels push -p {out_dir}"
        )
    try:
        proc = subprocess.run(
            [exe, "kernels", "push", "-p", str(out_dir)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise NotebookError(f"`kaggle kernels push -p {out_dir}` did not finish in {timeout} s") from None
    output = (proc.stdout or "") + (proc.stderr or "")
    # The CLI prints "Kernel push error: ..." and still exits 0 when the server refuses a push.
    if proc.returncode != 0 or re.search(r"push error|error:", output, re.I):
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise NotebookError(
            f"`kaggle kernels push -p {out_dir}` failed (exit code {proc.returncode}):\n{tail}\n"
            f"Is the CLI authenticated (`kaggle auth login` or ~/.kaggle/kaggle.json), and has "
            f"the account accepted the competition's rules?"
        )
    m = re.search(r"version\s+(\d+)", output, re.I)
    return (m.group(1) if m else None), output


def write_submission(
    key: str,
    overrides,
    out_dir,
    *,
    kaggle_user: str | None = None,
    machine_shape: str | None = None,
    push: bool = False,
) -> dict:
    """Write `out_dir/<key>.ipynb` and `out_dir/kernel-metadata.json`; with push=True, push them to Kaggle.

    Returns {"messages": [lines to print], "notebook": Path, "metadata": Path, "kernel_id": str,
    "version": str | None, "params": dict}.
    """
    nb = build_notebook(key, overrides)
    cls, values = resolve_params(key, overrides)
    user = kaggle_username(kaggle_user)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nb_path = out_dir / f"{key}.ipynb"
    meta = kernel_metadata(key, user, nb_path.name, machine_shape)
    meta_path = out_dir / "kernel-metadata.json"
    write_text(nb_path, nbformat.writes(nb) + "\n")
    write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    kernel_id = meta["id"]
    messages = [
        f"wrote {nb_path}  (method {key}: {', '.join(f'{k}={v!r}' for k, v in values.items())})",
        f"wrote {meta_path}  (kernel {kernel_id}, GPU on, internet off)",
    ]
    if not cls.valid_entry:
        messages.append(f"note: {key!r} is a reference row, not a valid competition entry")
    if values.get("seed") is not None:
        messages.append(
            f"warning: seed={values['seed']} is baked in, so all 512 runs share one seed; the scorer "
            f"rewards run-to-run variety. Leave seed unset for a real submission."
        )
    if user is None:
        messages.append(
            f"edit {meta_path}: replace {PLACEHOLDER_USER} with your Kaggle user name "
            f"(or rerun with --kaggle-user NAME, or set KAGGLE_USERNAME)"
        )
    version = None
    if push:
        if user is None:
            raise NotebookError(
                f"cannot push without a Kaggle user name: pass --kaggle-user NAME (files written to {out_dir})"
            )
        version, output = push_kernel(out_dir)
        messages.append(f"pushed {kernel_id}: " + (output.strip().splitlines() or [""])[-1])
        messages.append(
            f"wait until that version has run (the public run only writes an empty "
            f"submission.zip): kaggle kernels status {kernel_id}"
        )
    else:
        messages += [
            "next steps:",
            f"  1. push it (a GPU notebook, internet off):  kaggle kernels push -p {out_dir}",
            "     (or rerun this command with --push)",
            f"  2. wait until that version has run:        kaggle kernels status {kernel_id}",
        ]
    shown = version or VERSION_PLACEHOLDER
    messages.append(
        (
            "submit (a late submission; Kaggle then reruns the notebook on the hidden data):\n  "
            if push
            else "  3. submit (a late submission; Kaggle reruns it on the hidden data):\n     "
        )
        + submit_command(kernel_id, shown, key)
    )
    if version is None:
        messages.append(
            f"     {VERSION_PLACEHOLDER}: the notebook version the push created (printed by the push, "
            f"or the Version history on the notebook's Kaggle page)"
        )
    return {
        "messages": messages,
        "notebook": nb_path,
        "metadata": meta_path,
        "kernel_id": kernel_id,
        "version": version,
        "params": values,
    }
