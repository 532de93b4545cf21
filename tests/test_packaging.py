"""kernels/ installs as fastmix.kernels, from a wheel as well as in an editable install."""
import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_editable_install_maps_kernels_into_the_package():
    kernels = importlib.import_module("fastmix.kernels")
    assert Path(kernels.__file__).resolve().parent == ROOT / "kernels"


@pytest.mark.slow
def test_wheel_contains_the_kernels_and_py_typed(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("fastmix-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("fastmix/__init__.py", "fastmix/py.typed", "fastmix/kernels/__init__.py",
                     "fastmix/kernels/blend.py", "fastmix/kernels/targets.py", "fastmix/kernels/aot.py",
                     "fastmix/collate.py", "fastmix/apps/demo.py", "fastmix/apps/bench/compare.py", "fastmix/apps/bench/peers.py"):
        assert required in names, f"{required} missing from {wheel.name}"
    assert not any(name.startswith("kernels/") for name in names), "kernels/ must install inside fastmix/"
