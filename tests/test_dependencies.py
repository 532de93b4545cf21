"""The declared dependencies are enough: ``import fastmix`` and every ``fastmix`` command's import
work in an environment that has only them.

Nothing is installed. A subprocess puts an import blocker first on ``sys.meta_path`` that refuses
every top-level module outside the standard library, fastmix itself and the distributions that
``pyproject.toml``'s ``[project] dependencies`` bring (with what they require in turn, read from
their installed metadata). Then it imports fastmix and runs ``--help`` of each command that the
``fastmix`` entry point (read from ``[project.scripts]``) lists in ``COMMANDS``. An optional
import must be guarded (Pillow for the demo's picture, Triton for the kernels, the peers for
``fastmix bench``); an unguarded one fails here, as it would for a user after ``pip install
fastmix``. (CI's demo job runs ``make demo`` in its own fresh environment as well.)
"""
from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")   # Python 3.11+: reads pyproject.toml

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    """The distribution a requirement string names (``"numpy>=1.22; ..."`` -> ``"numpy"``), normalised."""
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _closure(requirements) -> set[str]:
    """The declared distributions and, through their installed metadata, everything they require
    unconditionally (requirements behind an ``extra ==`` marker are left out; other markers are
    kept, which can only allow more)."""
    seen, todo = set(), [_name(r) for r in requirements]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if "extra ==" not in r.replace('"', "'")]
    return seen


def allowed_modules() -> set[str]:
    dists = _closure(PROJECT["dependencies"])
    modules = {"fastmix"}
    for module, owners in metadata.packages_distributions().items():
        if any(owner.lower().replace("_", "-") in dists for owner in owners):
            modules.add(module)
    return modules


_BLOCKED_RUN = r"""
import importlib.abc, json, sys
allowed = set(json.loads(sys.argv[1]))
blocked = []

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in allowed or top in sys.stdlib_module_names or top in sys.builtin_module_names:
            return None
        blocked.append(top)
        raise ModuleNotFoundError(f"No module named {top!r} (not a declared dependency)", name=top)

sys.meta_path.insert(0, Blocker())
module_name, function_name = sys.argv[2].split(":")
argv = json.loads(sys.argv[3])
import fastmix, importlib
main = getattr(importlib.import_module(module_name), function_name)
try:
    code = main(argv)
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code or 0, "blocked": sorted(set(blocked))}))
"""


def _run_blocked(argv: list) -> dict:
    entry = PROJECT["scripts"]["fastmix"]
    proc = subprocess.run([sys.executable, "-c", _BLOCKED_RUN, json.dumps(sorted(allowed_modules())), entry,
                           json.dumps(argv)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, f"fastmix {' '.join(argv)} with only the declared dependencies:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_declared_dependencies_are_in_this_environment():
    """Otherwise the blocker below would allow nothing for them and prove nothing."""
    for requirement in PROJECT["dependencies"]:
        metadata.version(_name(requirement))


def test_numpy_and_torch_are_declared():
    """fastmix/cpu.py and fastmix/draws.py import numpy on ``import fastmix``; torch's wheels do not bring it."""
    assert {"torch", "numpy"} <= {_name(r) for r in PROJECT["dependencies"]}


def _commands() -> list:
    import importlib
    module_name, _ = PROJECT["scripts"]["fastmix"].split(":")
    return list(importlib.import_module(module_name).COMMANDS)


@pytest.mark.parametrize("argv", [["--help"]] + [[command, "--help"] for command in _commands()],
                         ids=lambda argv: " ".join(argv))
def test_import_fastmix_and_every_command_need_only_the_declared_dependencies(argv):
    result = _run_blocked(argv)
    assert result["code"] == 0, f"fastmix {' '.join(argv)} exited {result['code']} (blocked: {result['blocked']})"


def test_the_blocker_refuses_what_is_not_declared():
    """The check itself can fail: a module outside the declared set is refused."""
    assert "pytest" not in allowed_modules() and "numpy" in allowed_modules()
    code = _BLOCKED_RUN.replace("import fastmix, importlib", "import fastmix, importlib\nimport pytest")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(sorted(allowed_modules())),
                           PROJECT["scripts"]["fastmix"], json.dumps(["--help"])], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode != 0 and "not a declared dependency" in proc.stderr
