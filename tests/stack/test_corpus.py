"""Conformance: the loader against every case of ../shared/corpus (Docker Compose 2.40.3's output).

Each case runs in-process with its own arguments and environment, exactly as the corpus
README says the reference was run; valid cases must give JSON equal to ``expected.json``
(after the case directory becomes ``@CASE@``), rejected cases must raise ComposeError.
Known differences live in ``data/corpus_exceptions.txt`` with their reasons.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pystack.stack.errors import ComposeError
from pystack.stack.options import LoadOptions
from pystack.stack.pipeline import load_config

CORPUS = Path(__file__).parents[2].parent / "shared" / "corpus"
EXCEPTIONS = Path(__file__).parent / "data" / "corpus_exceptions.txt"


def _cases() -> list[str]:
    if not CORPUS.is_dir():
        return []
    return sorted(str(p.parent.relative_to(CORPUS)) for p in CORPUS.glob("*/*/case.args"))


def _exceptions() -> dict[str, str]:
    out: dict[str, str] = {}
    if EXCEPTIONS.exists():
        for line in EXCEPTIONS.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                case, _, reason = line.partition(" ")
                out[case] = reason.strip()
    return out


def case_options(case_dir: Path) -> LoadOptions:
    """LoadOptions from ``case.args`` and ``case.env``, as run_reference.sh runs the reference."""
    args = (case_dir / "case.args").read_text().split()
    opts = LoadOptions(working_dir=str(case_dir), warn=False)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root"}
    env_file = case_dir / "case.env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if "=" in line:
                key, _, value = line.partition("=")
                env[key] = value
    opts.environ = env
    i = 0
    while i < len(args):
        flag, value = args[i], args[i + 1] if i + 1 < len(args) else None
        if flag == "-p":
            opts.project_name = value
        elif flag == "-f":
            opts.files.append(value)
        elif flag == "--env-file":
            opts.env_files.append(value)
        elif flag == "--profile":
            opts.profiles.append(value)
        elif flag == "--project-directory":
            opts.project_directory = value
        else:
            raise AssertionError(f"unknown flag in case.args: {flag}")
        i += 2
    return opts


def run_case(case: str) -> tuple[bool, str]:
    """(passed, explanation) for one corpus case."""
    case_dir = (CORPUS / case).resolve()
    expected_rc = int((case_dir / "expected.rc").read_text().strip() or "0")
    try:
        loaded = load_config(case_options(case_dir))
    except ComposeError as exc:
        if expected_rc != 0:
            return True, f"rejected: {exc}"
        return False, f"unexpected rejection: {exc}"
    if expected_rc != 0:
        return False, "accepted a file the reference rejects"
    text = json.dumps(loaded.config).replace(str(case_dir), "@CASE@")
    got = json.loads(text)
    want = json.loads((case_dir / "expected.json").read_text())
    if got == want:
        return True, "equal"
    return False, "differs:\n" + _diff(want, got)


def _diff(want: object, got: object, path: str = "") -> str:
    if isinstance(want, dict) and isinstance(got, dict):
        lines = []
        for key in sorted(set(want) | set(got)):
            if key not in got:
                lines.append(f"missing {path}.{key} = {json.dumps(want[key])[:200]}")
            elif key not in want:
                lines.append(f"extra   {path}.{key} = {json.dumps(got[key])[:200]}")
            elif want[key] != got[key]:
                lines.append(_diff(want[key], got[key], f"{path}.{key}"))
        return "\n".join(lines)
    return f"at {path}: want {json.dumps(want)[:300]} got {json.dumps(got)[:300]}"


CASES = _cases()


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"conformance corpus not found at {CORPUS}")
@pytest.mark.parametrize("case", CASES or ["<none>"])
def test_corpus_case(case: str) -> None:
    if case in _exceptions():
        pytest.xfail(_exceptions()[case])
    passed, why = run_case(case)
    assert passed, why


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"conformance corpus not found at {CORPUS}")
def test_exceptions_are_real_cases() -> None:
    """Every listed exception names an existing case, so the list cannot rot silently."""
    assert set(_exceptions()) <= set(CASES)
