"""dotenv and interpolation: the syntaxes, without YAML around them."""
from __future__ import annotations

import pytest

from pystack.stack.dotenv import parse_dotenv
from pystack.stack.errors import ComposeError
from pystack.stack.interpolate import Substitutor, TemplateError, interpolate
from pystack.stack.yamlpos import parse_yaml


def test_dotenv_syntax() -> None:
    text = ("# comment\n\nexport A=1\nB = spaced  # comment\nC='single $A \\n'\n"
            'D="double $A \\t \\$A \\" end"\nE="multi\nline"\nF: yaml\nG=\nH=${A}${MISSING:-d}\n'
            "INHERITED\nNOT_SET_ANYWHERE\n")
    env = parse_dotenv(text, ".env", {"INHERITED": "from-shell"})
    assert env == {"A": "1", "B": "spaced", "C": "single $A \\n", "D": 'double 1 \t $A " end',
                   "E": "multi\nline", "F": "yaml", "G": "", "H": "1d", "INHERITED": "from-shell"}


def test_dotenv_lookup_prefers_the_environment() -> None:
    assert parse_dotenv("A=file\nB=$A\n", ".env", {"A": "shell"})["B"] == "shell"


@pytest.mark.parametrize("text", ["A='unterminated\n", "BAD KEY!=1\n"])
def test_dotenv_errors_name_the_line(text: str) -> None:
    with pytest.raises(ComposeError, match=r"\.env: line 1"):
        parse_dotenv(text, ".env")


@pytest.mark.parametrize("template,expected", [
    ("$A ${A} ${A}x $A-y", "a a ax a-y"),
    ("${E:-d} ${E-d} ${U:-d} ${U-d}", "d  d d"),
    ("${A:+alt} ${E:+alt} ${E+alt} ${U+alt}", "alt  alt "),
    ("${U:-${V:-${A}}}", "a"),
    ("${U:-{x}}", "{x}"),
    ("$$A $${A} $", "$A ${A} $"),
    ("cost 5$ or $1", "cost 5$ or $1"),
])
def test_substitution(template: str, expected: str) -> None:
    sub = Substitutor({"A": "a", "E": ""}, warn=False)
    assert sub.substitute(template) == expected


@pytest.mark.parametrize("template,message", [
    ("${U:?must be set}", "required variable U is missing a value: must be set"),
    ("${E:?}", "required variable E is missing a value"),
    ("${A", "Invalid template"),
    ("${}", "Invalid template"),
    ("${A:=x}", "Invalid template"),
])
def test_substitution_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("$", r"\$")):
        Substitutor({"A": "a", "E": ""}, warn=False).substitute(template)


def test_unset_variable_warns_once(capsys: pytest.CaptureFixture[str]) -> None:
    sub = Substitutor({}, warn=True)
    assert sub.substitute("$X $X ${X}") == "  "
    assert capsys.readouterr().err.count('"X" variable is not set') == 1


def test_interpolation_casts_and_positions() -> None:
    data, loc = parse_yaml("services:\n  s:\n    privileged: $P\n    scale: '${N}'\n"
                           "    ports: [{target: '$T'}]\n", "c.yaml")
    out = interpolate(data, Substitutor({"P": "true", "N": "3", "T": "80"}), loc)
    assert out["services"]["s"] == {"privileged": True, "scale": 3, "ports": [{"target": 80}]}
    with pytest.raises(ComposeError, match=r"^c\.yaml:4:5: services\.s\.scale: failed to cast"):
        interpolate(data, Substitutor({"P": "true", "N": "three", "T": "80"}), loc)
