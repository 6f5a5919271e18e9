"""Docker Compose's label names: the reconciler finds everything it owns by these."""
from __future__ import annotations

PREFIX = "com.docker.compose."
PROJECT = PREFIX + "project"
SERVICE = PREFIX + "service"
NUMBER = PREFIX + "container-number"
ONEOFF = PREFIX + "oneoff"
SLUG = PREFIX + "slug"
CONFIG_HASH = PREFIX + "config-hash"
IMAGE = PREFIX + "image"
DEPENDS_ON = PREFIX + "depends_on"
WORKING_DIR = PREFIX + "project.working_dir"
CONFIG_FILES = PREFIX + "project.config_files"
ENV_FILE = PREFIX + "project.environment_file"
VERSION = PREFIX + "version"
NETWORK = PREFIX + "network"
VOLUME = PREFIX + "volume"
REPLACE = PREFIX + "replace"

# what Docker Compose writes as its version; pystack writes its own
COMPOSE_VERSION = "2.40.3"


def project_filter(project: str) -> str:
    return f"{PROJECT}={project}"


def service_filter(service: str) -> str:
    return f"{SERVICE}={service}"
