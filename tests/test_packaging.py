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


def test_editable_finder_is_light_and_maps_the_folders(tmp_path: Path) -> None:
    """setup.py's editable strategy: the finder `site` imports at every Python start maps
    pystack.runtime ... onto the root folders as setuptools' does, without importing
    pathlib or importlib.util (~25 ms per process; the runtime CLI runs once per container
    operation), and the runtime's command works through it."""
    out = tmp_path / "wheel"
    out.mkdir()
    subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                    "build_meta.build_editable(sys.argv[1])", str(out)],
                   cwd=ROOT, check=True, capture_output=True)
    wheel = next(out.glob("pystack-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    pth = next(site.glob("__editable__.*.pth")).read_text().strip()
    finder = pth.split(";")[0].split()[1]
    check = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        f"import {finder} as f; f.install(); "
        "heavy = [m for m in ('pathlib', 'importlib.util', 're') if m in sys.modules]; "
        "import pystack.runtime.cli, pystack.stack, pystack.networking, pystack.volumes; "
        "print(heavy, pystack.runtime.cli.__file__, pystack.stack.__file__); "
        "sys.argv[1:] = ['--root', sys.argv[2], 'state', 'nosuch']; "
        "sys.exit(pystack.runtime.cli.main())")
    p = subprocess.run([sys.executable, "-S", "-c", check, str(site), str(tmp_path / "root")],
                       capture_output=True, text=True)
    heavy, cli_file, stack_file = p.stdout.split()
    assert heavy == "[]"
    assert cli_file == str(ROOT / "runtime" / "cli.py")
    assert stack_file == str(ROOT / "stack" / "__init__.py")
    # the command itself: runc's message and exit status for an unknown container
    assert p.returncode == 1 and "container nosuch does not exist" in p.stderr, p.stderr
