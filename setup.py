"""Maps the root folders stack/, runtime/, networking/ and volumes/ onto pystack.* subpackages.

DESIGN.md keeps the model and backend folders at the repository root but installs them
as ``pystack.stack``, ``pystack.runtime`` ... so that no generic top-level import name is
claimed. Sub-packages are discovered here so that adding one needs no edit of a shared list.
"""
import os

from setuptools import find_packages, setup

ROOTS = {"pystack": "pystack", "pystack.stack": "stack", "pystack.runtime": "runtime",
         "pystack.networking": "networking", "pystack.volumes": "volumes"}

packages: list[str] = []
package_dir: dict[str, str] = {}
for pkg, folder in ROOTS.items():
    package_dir[pkg] = folder
    packages.append(pkg)
    for sub in find_packages(folder):
        packages.append(f"{pkg}.{sub}")
        package_dir[f"{pkg}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"


# An editable install (pip install -e) maps pystack.runtime ... onto the root folders
# with setuptools' meta path finder, imported from a .pth file by `site` at every Python
# start. setuptools' finder module imports pathlib, importlib.util, itertools (re, enum,
# functools, urllib.parse, ipaddress, contextlib ...): ~25 ms of CPU per process on a slow
# VM before main() runs, which the one-shot `pystack-runtime` (started once per container
# operation by podman and the like) cannot afford. The finder below does the same lookups
# (the same MAPPING, the same candidates) with what the interpreter has loaded before
# `site` (_frozen_importlib_external, os). Anything unexpected (another setuptools
# strategy, namespace packages, a setuptools without these internals): setuptools' own.
LIGHT_FINDER = """\
\"\"\"pystack's editable finder (written by pystack's setup.py: see there).\"\"\"
import os
import sys

try:  # what importlib.machinery / importlib.util re-export, without importing them
    from _frozen_importlib_external import (BYTECODE_SUFFIXES, EXTENSION_SUFFIXES, PathFinder,
                                            SOURCE_SUFFIXES, spec_from_file_location)
except ImportError:  # not CPython
    from importlib.machinery import (BYTECODE_SUFFIXES, EXTENSION_SUFFIXES, PathFinder,
                                     SOURCE_SUFFIXES)
    from importlib.util import spec_from_file_location

MAPPING = {mapping!r}


class _EditableFinder:  # MetaPathFinder (setuptools' _EditableFinder, without pathlib)
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname in MAPPING:
            return cls._find_spec(fullname, MAPPING[fullname])
        parent, _, child = fullname.rpartition(".")
        if parent and parent in MAPPING:
            return PathFinder.find_spec(fullname, path=[MAPPING[parent]])
        return None

    @classmethod
    def _find_spec(cls, fullname, candidate_path):
        stem = os.path.splitext(candidate_path)[0]
        candidates = [os.path.join(candidate_path, "__init__.py")]
        candidates += [stem + x for x in SOURCE_SUFFIXES + BYTECODE_SUFFIXES + EXTENSION_SUFFIXES]
        for candidate in candidates:
            if os.path.exists(candidate):
                return spec_from_file_location(fullname, candidate)
        return None


def install():
    if not any(finder == _EditableFinder for finder in sys.meta_path):
        sys.meta_path.append(_EditableFinder)
"""

cmdclass = {}
try:
    from setuptools.command.editable_wheel import editable_wheel as _editable_wheel
except ImportError:  # an old setuptools: its own editable install
    _editable_wheel = None

if _editable_wheel is not None:
    class _LightFinder:
        """An editable strategy: setuptools' _TopLevelFinder's files, LIGHT_FINDER's code."""

        def __init__(self, inner, finder: str, mapping: dict) -> None:
            self.inner, self.finder, self.mapping = inner, finder, mapping

        def __call__(self, wheel, files, mapping) -> None:
            code = LIGHT_FINDER.format(mapping=dict(sorted(self.mapping.items())))
            wheel.writestr(f"{self.finder}.py", code.encode())
            wheel.writestr(f"__editable__.{self.inner.name}.pth",
                           f"import {self.finder}; {self.finder}.install()".encode())

        def __enter__(self):
            self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

    class editable_wheel(_editable_wheel):
        def _select_strategy(self, name, tag, build_lib):
            strategy = super()._select_strategy(name, tag, build_lib)
            try:
                finder, _name, mapping, namespaces = strategy.template_vars()
                inner_name = strategy.name
            except Exception:  # noqa: BLE001 - another strategy or another setuptools
                return strategy
            if namespaces or not inner_name or not all(
                    isinstance(k, str) and isinstance(v, (str, os.PathLike)) for k, v in mapping.items()):
                return strategy
            return _LightFinder(strategy, finder, {k: os.fspath(v) for k, v in mapping.items()})

    cmdclass["editable_wheel"] = editable_wheel

setup(
    cmdclass=cmdclass,
    packages=packages,
    package_dir=package_dir,
    # data files (JSON schema, seccomp profile, ...) shipped inside the packages
    package_data={pkg: ["*.json", "*.yaml", "*.txt", "data/*", "data/**/*"] for pkg in packages},
    include_package_data=True,
)
