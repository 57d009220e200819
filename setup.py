"""Packages for the wheel: every `nodegraph*` package, plus the shipped `graphs/` folder as the data package
`nodegraph.graphs` (pyproject.toml alone cannot map a folder outside the package into it). Read at run time
through nodegraph/shipped_graphs.py."""

from setuptools import find_namespace_packages, setup

setup(packages=find_namespace_packages(include=["nodegraph*"]) + ["nodegraph.graphs"],
      package_dir={"nodegraph.graphs": "graphs"})
