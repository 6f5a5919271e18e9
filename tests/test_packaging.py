"""The wheel holds every package of DESIGN.md's layout, mapped under pystack.*."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_mapped_packages(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True)
    wheel = next(tmp_path.glob("pystack-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in ("pystack", "pystack/stack", "pystack/runtime", "pystack/networking", "pystack/volumes"):
        assert f"{pkg}/__init__.py" in names, pkg
    # no generic top-level import name is claimed
    assert not any(n.startswith(("stack/", "runtime/", "networking/", "volumes/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "pystack = pystack.cli:main" in text


def test_cli_help_runs() -> None:
    out = subprocess.run(["pystack", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout
