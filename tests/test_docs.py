"""Every method a command example names (README, docstrings, scripts, tests) is registered."""

import re

import methods
from tests.conftest import ROOT

FILES = [
    ROOT / "README.md",
    ROOT / "main.py",
    ROOT / "notebook_utils.py",
    *sorted((ROOT / "scripts").glob("*")),
    *sorted((ROOT / "methods").glob("*.py")),
    *sorted((ROOT / "eval").rglob("*.py")),
    *sorted((ROOT / "tests").rglob("*.py")),
]
COMMAND = re.compile(r"(?:main\.py|sweep\.py)[^\n`]*?(?:-m|--method)\s+([A-Za-z_][\w]*)")
BOARD = re.compile(r"main\.py[^\n`]*--leaderboard((?:\s+[A-Za-z_]\w*)+)")


def _named():
    found = []
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        found += [(path.name, m) for m in COMMAND.findall(text)]
        for group in BOARD.findall(text):
            found += [(path.name, m) for m in group.split() if not m.startswith("-")]
    return found


def test_examples_name_registered_methods():
    named = _named()
    assert len(named) > 10, "the pattern finds the examples"
    unknown = []
    for where, name in named:
        if name in ("NAME", "KEY", "my_idea", "_broken", "broken_syntax"):  # placeholders and test doubles
            continue
        try:
            methods.get_method(name)
        except ValueError:
            unknown.append(f"{where}: {name}")
    assert not unknown, f"examples name methods that are not registered: {unknown}"


# A machine's own folders (a development checkout, a home directory) and the development
# machine's offline data folder mean nothing to a user who clones the repository.
MACHINE_PATH = re.compile(r"/work/|/home/[a-z]|/Users/[A-Za-z]|\.\./shared")
# The only exceptions: CI provides CIFAR-10 offline from that folder; this file's pattern.
MACHINE_PATH_ALLOWED = {".ci/run", "tests/test_docs.py"}


def test_no_file_names_a_machine_path():
    import subprocess

    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:
        import pytest

        pytest.skip("not a git checkout")
    found = []
    for name in listed.stdout.splitlines():
        path = ROOT / name
        if name in MACHINE_PATH_ALLOWED or path.suffix in (".npz", ".png", ".db", ".pt") or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found += [f"{name}: {m.group(0)}" for m in MACHINE_PATH.finditer(text)]
    assert not found, f"files name a path of some machine: {found[:20]}"
