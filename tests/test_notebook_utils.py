"""The Kaggle notebook generator: template, inlining, refusals, kernel metadata, push (no kernel started).

Executing notebooks end to end is in test_notebook_exec.py.
"""

import ast
import copy
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import nbformat
import pytest
import torch

import methods
import notebook_utils as nu
from notebook_utils import NotebookError

ROOT = Path(__file__).resolve().parents[1]
KEYS = methods.available_methods()
PROJECT = {"methods", "data", "eval", "main", "notebook_utils", "tests"}


def _cell(nb, tag):
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"one cell tagged {tag!r}"
    return cells[0]


def _imports(source):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield "." * node.level + (node.module or "")


def _assigned_literal(source, name):
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not assigned")


def _test_overrides(key):
    cls = methods.get_method(key)
    extra = {"retrain": {"epochs": 1}, "my_method": {"epochs": 1}}.get(key, {})
    return {**(cls.test_overrides() if hasattr(cls, "test_overrides") else {}), **extra}


# ---------------------------------------------------------------------------------------------
# the template


def test_template_is_a_valid_kaggle_notebook():
    nb = nbformat.read(str(ROOT / "run-unlearn-finetune.ipynb"), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec["name"] == "python3"
    assert nb.metadata.language_info["name"] == "python"
    params = _cell(nb, "parameters").source
    assert _assigned_literal(params, "N_CHECKPOINTS") == 512
    assert _assigned_literal(params, "DATA_DIR") == "/kaggle/input/neurips-2023-machine-unlearning"
    assert _assigned_literal(params, "OUTPUT_DIR") == "/kaggle/tmp"
    fn = [n for n in ast.parse(_cell(nb, "unlearning").source).body if isinstance(n, ast.FunctionDef)]
    assert [f.name for f in fn] == ["unlearning"]
    assert [a.arg for a in fn[0].args.args] == ["net", "retain_loader", "forget_loader", "val_loader"]
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for needle in (
        "empty.txt",
        "original_model.pth",
        "resnet18(weights=None, num_classes=10)",
        "get_dataset(64)",
        "shuffle=True",
        "submission.zip",
        "torch.float32",
        "retain",
    ):
        assert needle in code, needle
    for cell in nb.cells:
        if cell.cell_type == "code":
            compile(cell.source, cell.id, "exec")
            assert not cell.outputs and cell.execution_count is None
    assert not set(map(lambda m: m.split(".")[0], _imports(code))) & PROJECT


# ---------------------------------------------------------------------------------------------
# every registered method


@pytest.mark.parametrize("key", KEYS)
def test_generated_notebook_is_valid_and_self_contained(key):
    nb = nu.build_notebook(key)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec["name"] == "python3" and "language_info" in nb.metadata
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        compile(cell.source, f"{key}:{cell.id}", "exec")
        heads = {m.split(".")[0] for m in _imports(cell.source)}
        assert not heads & PROJECT and not any(h.startswith(".") or h == "" for h in heads), heads
        allowed = nu.ALLOWED_THIRD_PARTY | set(sys.stdlib_module_names)
        assert heads <= allowed, heads - allowed
    src = _cell(nb, "unlearning").source
    cls = methods.get_method(key)
    # the method's file, BaseMethod and every project module it imports are pasted, each once
    for mod in nu.collect_modules(cls.__module__, extra=(nu.TRAINING_MODULE,) if key == "retrain" else ()):
        rel = str(mod.path.relative_to(ROOT))
        assert src.count(f"# {'=' * 20} {rel} ") == 1, rel

    def banner(rel):
        return src.index(f"# {'=' * 20} {rel} ")

    assert banner("methods/BaseMethod.py") < banner(f"methods/{cls.__module__.split('.')[-1]}.py")
    # the resolved defaults are baked in; seed stays None so the 512 runs differ
    baked = _assigned_literal(src, "METHOD_PARAMS")
    assert baked == cls.defaults() and baked["seed"] is None
    assert _assigned_literal(src, "METHOD_KEY") == key


@pytest.mark.parametrize("key", KEYS)
def test_generated_cell_runs_in_process_on_dict_batches(key):
    """The pasted code works on its own: exec it in a fresh namespace and unlearn a tiny net."""
    from data.archs.tiny_cnn import TinyCNN
    from data.splits import make_loader

    nb = nu.build_notebook(key, _test_overrides(key))
    ns = {"__name__": f"nbtest_{key}"}
    exec(compile(_cell(nb, "unlearning").source, f"<{key}>", "exec"), ns)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (96, 3, 32, 32), generator=g).float()  # unnormalized, as on Kaggle
    y = torch.randint(0, 10, (96,), generator=g)
    if getattr(methods.get_method(key), "class_wise", False):  # a whole class forgotten; every class held out
        y[:64] = torch.where(y[:64] == 0, 1, y[:64])
        y[64:80], y[80:90] = 0, torch.arange(10)
    loaders = [
        make_loader(x[a:b], y[a:b], 32, shuffle=True, seed=a, dict_batches=True)
        for a, b in ((0, 64), (64, 80), (80, 96))
    ]
    torch.manual_seed(0)
    net = TinyCNN()
    before = copy.deepcopy(net.state_dict())
    assert ns["unlearning"](net, *loaders) is None
    assert not net.training
    assert all(torch.isfinite(v).all() for v in net.state_dict().values() if v.is_floating_point())
    if key != "none":
        assert any(not torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_overrides_are_baked_and_checked():
    src = _cell(nu.build_notebook("my_method", {"epochs": 3, "lr": 0.5}), "unlearning").source
    assert _assigned_literal(src, "METHOD_PARAMS") == {
        **methods.get_method("my_method").defaults(),
        "epochs": 3,
        "lr": 0.5,
    }
    src = _cell(nu.build_notebook("my_method", ["epochs=4"]), "unlearning").source
    assert _assigned_literal(src, "METHOD_PARAMS")["epochs"] == 4
    with pytest.raises(NotebookError, match="epochs"):
        nu.build_notebook("my_method", {"epochs": 0})
    with pytest.raises(NotebookError, match="unknown parameter"):
        nu.build_notebook("my_method", {"nope": 1})
    with pytest.raises(NotebookError, match="unknown method"):
        nu.build_notebook("no_such_method")


def test_retrain_gets_the_test_phase_recipe():
    from data.presets import get_preset

    src = _cell(nu.build_notebook("retrain"), "unlearning").source
    assert "method.configure(RECIPE)" in src and "class Recipe" in src
    ns = {"__name__": "nbtest_retrain"}
    exec(compile(src, "<retrain>", "exec"), ns)
    assert ns["RECIPE"].to_dict() == get_preset("kaggle").recipe.to_dict()
    assert "configure" not in _cell(nu.build_notebook("my_method"), "unlearning").source.split("entry point")[1]


def test_parameters_cell_and_build_arguments():
    nb = nu.build_notebook("none", n_checkpoints=3, data_dir="/data/x", output_dir="/out/y", require_gpu=False)
    params = _cell(nb, "parameters").source
    assert _assigned_literal(params, "N_CHECKPOINTS") == 3
    assert _assigned_literal(params, "DATA_DIR") == "/data/x"
    assert _assigned_literal(params, "OUTPUT_DIR") == "/out/y"
    assert _assigned_literal(params, "REQUIRE_GPU") is False
    nu.set_parameters(nb, N_CHECKPOINTS=5)
    assert _assigned_literal(_cell(nb, "parameters").source, "N_CHECKPOINTS") == 5
    with pytest.raises(NotebookError, match="no NOPE"):
        nu.set_parameters(nb, NOPE=1)
    defaults = _cell(nu.build_notebook("none"), "parameters").source
    assert _assigned_literal(defaults, "N_CHECKPOINTS") == 512
    assert _assigned_literal(defaults, "REQUIRE_GPU") is True


def test_markdown_mentions_unnormalized_data_and_params():
    nb = nu.build_notebook("my_method", {"epochs": 3})
    notes = _cell(nb, "method-notes").source
    assert "unnormalized" in notes and "0–255" in notes and "`epochs` | `3`" in notes


def test_py_literal_round_trips():
    for v in (None, True, 3, -2.5, 1e-12, "a'b\"c", [1, (2,)], {"k": [None, 0.1]}, ()):
        assert ast.literal_eval(nu.py_literal(v)) == v
    assert eval(nu.py_literal(float("inf"))) == float("inf")
    with pytest.raises(NotebookError, match="cannot write"):
        nu.py_literal(object(), "X.Params.y")


# ---------------------------------------------------------------------------------------------
# inlining rules, on a fake project tree


@pytest.fixture
def fake_root(tmp_path):
    (tmp_path / "methods").mkdir()
    for name in ("__init__.py", "BaseMethod.py", "_registry.py", "_common.py"):
        shutil.copy(ROOT / "methods" / name, tmp_path / "methods" / name)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "__init__.py").write_text("")

    def write(name, text):
        (tmp_path / "methods" / f"{name}.py").write_text(text)
        return tmp_path

    write.root = tmp_path
    return write


METHOD = '''
from dataclasses import dataclass

{imports}
from methods.BaseMethod import BaseMethod, register


@register("fake")
class Fake(BaseMethod):
    """A fake."""

    def run(self, net, retain_loader, forget_loader, val_loader):
        net.eval()
'''


@pytest.mark.parametrize(
    "imports, match",
    [
        ("import requests", r"fake\.py:4: imports 'requests'.*offline"),
        ("from transformers import AutoModel", r"fake\.py:4: imports 'transformers'"),
        ("from data.splits import make_loader", r"fake\.py:4: imports project module 'data.splits'"),
        ("import main", r"imports project module 'main'"),
        ("import methods._common", "top-level `from methods"),
        ("from methods import _common", "top-level `from methods"),
        ("from methods._common import unpack; import os", "shares its line"),
        ("from methods._common import *", r"import \*"),
        ("from ._common import unpack", "relative import"),
        ("try:\n    from methods._common import unpack\nexcept ImportError:\n    pass", "inside a block"),
        ("X = __file__", "__file__"),
        ("def get_method(key):\n    return None", r"clash on 'get_method'.*_registry\.py"),
        ("if __name__ == '__main__':\n    print(1)", "__name__"),
        ("try:\n    pass\nexcept* ValueError:\n    pass", "newer than Python 3.10"),
    ],
)
def test_refusals_name_the_file_and_the_fix(fake_root, imports, match):
    root = fake_root("fake", METHOD.format(imports=imports))
    with pytest.raises(NotebookError, match=match):
        nu.inline_source("methods.fake", root)


def test_nested_project_import_is_refused(fake_root):
    root = fake_root("fake", METHOD.format(imports="") + "\n\ndef helper():\n    from methods._common import unpack\n")
    with pytest.raises(NotebookError, match="inside a block"):
        nu.inline_source("methods.fake", root)


def test_dependency_order_each_module_once_and_aliases(fake_root):
    fake_root("_a", "import torch\nfrom methods._common import unpack\n\n\ndef a_helper():\n    return unpack\n")
    fake_root(
        "_b",
        "from methods._a import a_helper\nfrom methods._common import cycle as loop_forever\n\n\n"
        "def b_helper():\n    return a_helper, loop_forever\n",
    )
    root = fake_root(
        "fake",
        METHOD.format(
            imports="import numpy as np\nfrom methods._b import b_helper\nfrom methods._a import a_helper as helper_a"
        ),
    )
    code, mods = nu.inline_source("methods.fake", root)
    assert [m.name for m in mods] == [
        "methods._registry",
        "methods.BaseMethod",
        "methods._common",
        "methods._a",
        "methods._b",
        "methods.fake",
    ]
    assert "from methods" not in code and "import numpy as np" in code and "import torch" in code
    assert "loop_forever = cycle" in code and "helper_a = a_helper" in code
    ns = {"__name__": "nbtest_fake"}
    exec(compile(code, "<fake>", "exec"), ns)
    assert ns["b_helper"]()[1] is ns["cycle"] and ns["get_method"]("fake").summary() == "A fake."


def test_a_wrapped_import_is_pasted_like_a_one_line_one(fake_root):
    """ruff's isort wraps a long import in parentheses over several lines: every line of it goes."""
    root = fake_root(
        "fake",
        METHOD.format(
            imports="from methods._common import (\n    cycle as loop_forever,\n"
            "    unpack,\n)  # wrapped\nimport numpy as np"
        ),
    )
    code, _ = nu.inline_source("methods.fake", root)
    assert "from methods" not in code and "    unpack,\n" not in code and "loop_forever = cycle\n" in code
    ns = {"__name__": "nbtest_fake"}
    exec(compile(code, "<fake>", "exec"), ns)
    assert ns["loop_forever"] is ns["cycle"] and ns["np"].__name__ == "numpy"


def test_cycles_and_collisions_are_refused(fake_root):
    fake_root("_x", "from methods._y import y\n\n\ndef x():\n    return 1\n")
    fake_root("_y", "from methods._x import x\n\n\ndef y():\n    return 2\n")
    root = fake_root("fake", METHOD.format(imports="from methods._x import x"))
    with pytest.raises(NotebookError, match=r"import cycle.*_x\.py -> methods/_y\.py -> methods/_x\.py"):
        nu.inline_source("methods.fake", root)
    fake_root("_x", "def unpack(batch):\n    return batch\n")
    with pytest.raises(NotebookError, match=r"clash on 'unpack': methods/_(x|common)\.py defines it \(def\)"):
        nu.inline_source(
            "methods.fake",
            fake_root(
                "fake", METHOD.format(imports="from methods._x import unpack\nfrom methods._common import cycle")
            ),
        )
    fake_root("_x", "def get_dataset(n):\n    return n\n")
    with pytest.raises(NotebookError, match="the notebook template"):
        nu.inline_source(
            "methods.fake",
            fake_root("fake", METHOD.format(imports="from methods._x import get_dataset")),
            reserved={"get_dataset": "def"},
        )
    # one alias for two different objects is a clash; the same alias for the same object is not
    fake_root("_x", "from methods._common import cycle as step\n")
    with pytest.raises(NotebookError, match="clash on 'step'"):
        nu.inline_source(
            "methods.fake",
            fake_root(
                "fake", METHOD.format(imports="from methods._x import step\nfrom methods._common import unpack as step")
            ),
        )
    nu.inline_source(
        "methods.fake",
        fake_root(
            "fake", METHOD.format(imports="from methods._x import step\nfrom methods._common import cycle as step")
        ),
    )
    # the same import in two files, or in a file and the template, is fine
    nu.inline_source(
        "methods.fake", fake_root("fake", METHOD.format(imports="import torch")), reserved={"torch": "import:torch"}
    )
    nu.inline_source(
        "methods.fake",
        fake_root("fake", METHOD.format(imports="from torch import nn")),
        reserved={"nn": "import:torch.nn"},
    )
    with pytest.raises(NotebookError, match="clash on 'nn'.*imports it from numpy"):
        nu.inline_source(
            "methods.fake",
            fake_root("fake", METHOD.format(imports="import numpy as nn")),
            reserved={"nn": "import:torch.nn"},
        )


def test_every_method_file_passes_the_inliner():
    """What the style guide asks of methods/*.py, checked on the real files (not only registered ones)."""
    for path in sorted((ROOT / "methods").glob("*.py")):
        if path.name != "__init__.py":
            nu.parse_module(f"methods.{path.stem}")


# ---------------------------------------------------------------------------------------------
# kernel metadata, user name, push


@pytest.fixture
def no_kaggle_config(tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_write_submission_files(tmp_path, no_kaggle_config):
    out = tmp_path / "submissions" / "my_method"
    info = nu.write_submission("my_method", {"epochs": 3}, out, kaggle_user="alice")
    assert info["notebook"] == out / "my_method.ipynb" and info["metadata"] == out / "kernel-metadata.json"
    nb = nbformat.read(str(info["notebook"]), as_version=4)
    nbformat.validate(nb)
    assert _assigned_literal(_cell(nb, "unlearning").source, "METHOD_PARAMS")["epochs"] == 3
    assert _assigned_literal(_cell(nb, "parameters").source, "N_CHECKPOINTS") == 512
    meta = json.loads(info["metadata"].read_text())
    assert meta["id"] == "alice/unlearning-my-method" and meta["title"] == "unlearning-my-method"
    assert meta["code_file"] == "my_method.ipynb" and (out / meta["code_file"]).is_file()
    assert meta["language"] == "python" and meta["kernel_type"] == "notebook"
    assert meta["is_private"] is True and meta["enable_gpu"] is True and meta["enable_internet"] is False
    assert meta["competition_sources"] == ["neurips-2023-machine-unlearning"]
    assert "machine_shape" not in meta
    text = "\n".join(info["messages"])
    assert f"kaggle kernels push -p {out}" in text
    assert (
        "kaggle competitions submit neurips-2023-machine-unlearning -f submission.zip "
        "-k alice/unlearning-my-method -v <VERSION>"
    ) in text
    info = nu.write_submission("my_method", {}, out, kaggle_user="alice", machine_shape="NvidiaTeslaT4")
    assert json.loads(info["metadata"].read_text())["machine_shape"] == "NvidiaTeslaT4"
    assert not list(out.glob("*.tmp"))


def test_slug_is_its_own_title():
    for key in KEYS + ["A_Weird key!!", "x" * 80]:
        slug = nu.kernel_slug(key)
        assert slug.startswith("unlearning-") and 5 <= len(slug) <= 50
        assert set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-") and "--" not in slug
        assert nu.kernel_metadata(key, "u", "k.ipynb")["title"] == slug


def test_user_from_env_config_or_placeholder(tmp_path, no_kaggle_config, monkeypatch):
    out = tmp_path / "sub"
    info = nu.write_submission("none", None, out)
    assert json.loads(info["metadata"].read_text())["id"] == "YOUR-KAGGLE-USERNAME/unlearning-none"
    assert any("YOUR-KAGGLE-USERNAME" in m and "--kaggle-user" in m for m in info["messages"])
    cfg = tmp_path / "kaggle-config"
    cfg.mkdir()
    (cfg / "kaggle.json").write_text(json.dumps({"username": "bob", "key": "secret"}))
    assert nu.write_submission("none", None, out)["kernel_id"] == "bob/unlearning-none"
    monkeypatch.setenv("KAGGLE_USERNAME", "carol")
    assert nu.write_submission("none", None, out)["kernel_id"] == "carol/unlearning-none"
    assert nu.write_submission("none", None, out, kaggle_user="dave")["kernel_id"] == "dave/unlearning-none"
    with pytest.raises(NotebookError, match="invalid Kaggle user"):
        nu.write_submission("none", None, out, kaggle_user="a b/c")


def test_seed_override_warns(tmp_path, no_kaggle_config):
    info = nu.write_submission("my_method", {"seed": 3}, tmp_path / "s", kaggle_user="alice")
    assert any("seed=3" in m and "warning" in m for m in info["messages"])


def _fake_kaggle(bin_dir: Path, body: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "kaggle"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_push_runs_the_cli_and_prints_the_submit_command(tmp_path, no_kaggle_config, monkeypatch):
    log = tmp_path / "args.txt"
    _fake_kaggle(
        tmp_path / "bin",
        f'echo "$@" > {log}\necho "Kernel version 7 successfully pushed.  Please check progress at https://x"\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "sub"
    info = nu.write_submission("my_method", None, out, kaggle_user="alice", push=True)
    assert log.read_text().split() == ["kernels", "push", "-p", str(out)]
    assert info["version"] == "7"
    assert any(
        "kaggle competitions submit neurips-2023-machine-unlearning -f submission.zip "
        '-k alice/unlearning-my-method -v 7 -m "my_method"' in m
        for m in info["messages"]
    )


@pytest.mark.parametrize(
    "body", ['echo "Kernel push error: Notebook not found"\n', 'echo "401 Unauthorized" >&2\nexit 1\n']
)
def test_push_failures_are_reported(tmp_path, no_kaggle_config, monkeypatch, body):
    _fake_kaggle(tmp_path / "bin", body)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(NotebookError, match="failed"):
        nu.write_submission("my_method", None, tmp_path / "sub", kaggle_user="alice", push=True)


def test_push_without_cli_or_user(tmp_path, no_kaggle_config, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(NotebookError, match="pip install kaggle"):
        nu.write_submission("my_method", None, tmp_path / "sub", kaggle_user="alice", push=True)
    assert (tmp_path / "sub" / "my_method.ipynb").is_file()  # written before the push was tried
    with pytest.raises(NotebookError, match="--kaggle-user"):
        nu.write_submission("my_method", None, tmp_path / "sub2", push=True)


def test_kaggle_is_never_imported():
    tree = ast.parse((ROOT / "notebook_utils.py").read_text())
    assert "kaggle" not in {m.split(".")[0] for m in _imports(ast.unparse(tree))}


def test_main_test_phase(tmp_path, no_kaggle_config, capsys, monkeypatch):
    import main as cli

    subs = tmp_path / "submissions"
    assert (
        cli.main(
            [
                "-m",
                "my_method",
                "-p",
                "test",
                "--submissions-dir",
                str(subs),
                "--kaggle-user",
                "alice",
                "--set",
                "epochs=1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "kaggle competitions submit" in out and (subs / "my_method" / "my_method.ipynb").is_file()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert (
        cli.main(["-m", "my_method", "-p", "test", "--submissions-dir", str(subs), "--kaggle-user", "alice", "--push"])
        == 1
    )
    assert "pip install kaggle" in capsys.readouterr().err
