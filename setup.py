"""Maps the root folders stack/, runtime/, networking/ and volumes/ onto pystack.* subpackages.

DESIGN.md keeps the model and backend folders at the repository root but installs them
as ``pystack.stack``, ``pystack.runtime`` ... so that no generic top-level import name is
claimed. Sub-packages are discovered here so that adding one needs no edit of a shared list.
"""
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

setup(
    packages=packages,
    package_dir=package_dir,
    # data files (JSON schema, seccomp profile, ...) shipped inside the packages
    package_data={pkg: ["*.json", "*.yaml", "*.txt", "data/*", "data/**/*"] for pkg in packages},
    include_package_data=True,
)
