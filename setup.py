"""Package discovery that cannot forget a package: every directory under fleetbuild/ is found (data
directories such as templates/ too), and the first-party plugins (plugins/) and the shipped targets
(targets/) are installed under their import names. Everything else is in pyproject.toml."""
from setuptools import find_namespace_packages, setup

MAPPED = {"fleetbuild_plugins": "plugins", "fleetbuild_targets": "targets"}


def discover(where: str = ".", include: tuple = ("*",)) -> list:
    return find_namespace_packages(where, include=list(include), exclude=["*__pycache__*"])


packages = discover(include=("fleetbuild", "fleetbuild.*"))
for name, directory in MAPPED.items():
    packages += [name] + [f"{name}.{sub}" for sub in discover(directory)]

setup(packages=packages, package_dir=MAPPED)
