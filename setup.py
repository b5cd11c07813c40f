"""Maps the `brook.*` namespace onto the project's top-level folders.

pyproject.toml holds the metadata; this file only computes the package list, so a new
subpackage under any of the mapped folders is picked up without editing a list.
"""

from setuptools import find_packages, setup

PACKAGE_ROOTS = {
    "brook": "brook",
    "brook.storage": "storage",
    "brook.services": "services",
    "brook.client": "client",
}

packages: list[str] = []
package_dir: dict[str, str] = {}
for package, folder in PACKAGE_ROOTS.items():
    packages.append(package)
    package_dir[package] = folder
    packages.extend(f"{package}.{sub}" for sub in find_packages(folder))

setup(packages=packages, package_dir=package_dir)
