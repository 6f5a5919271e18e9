"""Discovery and the pipeline's contract: files, project directory, name, environment, errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from pystack.stack.discover import normalize_project_name
from pystack.stack.errors import ComposeError
from pystack.stack.options import LoadOptions
from pystack.stack.pipeline import load_config

SIMPLE = "services:\n  web:\n    image: busybox\n"


def _opts(cwd: Path, **kw: object) -> LoadOptions:
    env = kw.pop("environ", {"HOME": "/root"})
    return LoadOptions(working_dir=str(cwd), environ=env, warn=False, **kw)  # type: ignore[arg-type]


def test_default_file_found_in_a_parent_with_its_override(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(SIMPLE)
    (tmp_path / "compose.override.yaml").write_text("services:\n  web:\n    command: override\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    loaded = load_config(_opts(sub, project_name="p"))
    assert loaded.config_files == [str(tmp_path / "compose.yaml"), str(tmp_path / "compose.override.yaml")]
    assert loaded.working_dir == str(tmp_path)
    assert loaded.config["services"]["web"]["command"] == ["override"]


def test_explicit_file_does_not_load_the_override(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(SIMPLE)
    (tmp_path / "compose.override.yaml").write_text("services:\n  web:\n    command: override\n")
    loaded = load_config(_opts(tmp_path, files=["compose.yaml"], project_name="p"))
    assert loaded.config["services"]["web"]["command"] is None


def test_compose_file_variable_with_separator(tmp_path: Path) -> None:
    (tmp_path / "one.yml").write_text(SIMPLE)
    (tmp_path / "two.yml").write_text("services:\n  web:\n    user: nobody\n")
    loaded = load_config(_opts(tmp_path, environ={"COMPOSE_FILE": "one.yml|two.yml",
                                                  "COMPOSE_PATH_SEPARATOR": "|"}))
    assert loaded.config["services"]["web"]["user"] == "nobody"


def test_no_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ComposeError, match="no configuration file provided"):
        load_config(_opts(tmp_path))


@pytest.mark.parametrize("raw,normalized", [
    ("My_Project", "my_project"), ("-_x.y z", "xyz"), ("Ünïcode-1", "ncode-1"), ("__", "")])
def test_project_name_normalization(raw: str, normalized: str) -> None:
    assert normalize_project_name(raw) == normalized


def test_project_name_sources(tmp_path: Path) -> None:
    project = tmp_path / "Some Dir"
    project.mkdir()
    (project / "compose.yaml").write_text(SIMPLE)
    assert load_config(_opts(project)).name == "somedir"
    (project / "compose.yaml").write_text("name: From_File\n" + SIMPLE)
    assert load_config(_opts(project)).name == "from_file"
    env = {"COMPOSE_PROJECT_NAME": "from-env"}
    assert load_config(_opts(project, environ=env)).name == "from-env"
    assert load_config(_opts(project, environ=env, project_name="flag")).name == "flag"


@pytest.mark.parametrize("kw", [{"project_name": "Bad"}, {"environ": {"COMPOSE_PROJECT_NAME": "-x"}}])
def test_invalid_imposed_project_name(tmp_path: Path, kw: dict) -> None:
    (tmp_path / "compose.yaml").write_text(SIMPLE)
    with pytest.raises(ComposeError, match="invalid project name"):
        load_config(_opts(tmp_path, **kw))


def test_environment_precedence_and_result_fields(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: $IMG\n    environment: [N=$COMPOSE_PROJECT_NAME, P=$PWD]\n")
    (tmp_path / ".env").write_text("IMG=dotenv\nCOMPOSE_PROFILES=x\n")
    (tmp_path / "alt.env").write_text("IMG=alt\n")
    loaded = load_config(_opts(tmp_path, project_name="p"))
    assert loaded.config["services"]["web"]["image"] == "dotenv"
    assert loaded.profiles == ["x"]
    assert loaded.config["services"]["web"]["environment"] == {"N": "p", "P": str(tmp_path)}
    assert load_config(_opts(tmp_path, project_name="p", env_files=["alt.env"])).config[
        "services"]["web"]["image"] == "alt"
    shell = {"HOME": "/root", "IMG": "shell"}
    assert load_config(_opts(tmp_path, project_name="p", environ=shell)).environment["IMG"] == "shell"


def test_stdin_file(tmp_path: Path) -> None:
    loaded = load_config(_opts(tmp_path, files=["-"], project_name="p",
                               stdin_text="services:\n  a:\n    image: x\n    build: ./ctx\n"))
    assert loaded.config["services"]["a"]["build"]["context"] == str(tmp_path / "ctx")


def test_errors_name_the_file_that_holds_the_mistake(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(SIMPLE)
    (tmp_path / "bad.yaml").write_text("services:\n  web:\n    ports:\n      - '80:http'\n")
    with pytest.raises(ComposeError) as info:
        load_config(_opts(tmp_path, files=["compose.yaml", "bad.yaml"], project_name="p"))
    assert str(info.value).startswith(f"{tmp_path / 'bad.yaml'}:4:9: services.web.ports[0]:")


def test_dollars_doubled_in_config_but_not_in_model(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    image: x\n    command: echo $$HOME\n")
    loaded = load_config(_opts(tmp_path, project_name="p"))
    assert loaded.config["services"]["a"]["command"] == ["echo", "$$HOME"]
    assert loaded.model["services"]["a"]["command"] == ["echo", "$HOME"]


def test_services_named_pull_in_their_dependencies(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, profiles: [p]}\n  c: {image: x}\n")
    loaded = load_config(_opts(tmp_path, project_name="p", services=["a"], profiles=["p"]))
    assert sorted(loaded.config["services"]) == ["a", "b"]
    # as Compose 2.40: naming a does not enable the profile of b it depends on
    with pytest.raises(ComposeError, match='depends on undefined service "b"'):
        load_config(_opts(tmp_path, project_name="p", services=["a"]))
    with pytest.raises(ComposeError, match="no such service: nope"):
        load_config(_opts(tmp_path, project_name="p", services=["nope"], profiles=["p"]))
