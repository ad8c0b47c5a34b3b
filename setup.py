"""Only what pyproject.toml cannot say: the top-level ``flows/`` folder installs as the
``quantgate.flows`` package (setuptools ``package_dir``; operators keep finding it at the root),
next to the packages found under ``src/``. Metadata, dependencies and package data are in
pyproject.toml."""

from setuptools import find_namespace_packages, setup

# namespace discovery also lists data-only folders (quantgate.templates), so that their files
# ship as package data without setuptools' "package would be ignored" warning
packages = find_namespace_packages("src", include=["quantgate", "quantgate.*"], exclude=["*__pycache__*"])

setup(
    packages=[*packages, "quantgate.flows"],
    package_dir={"": "src", "quantgate.flows": "flows"},
)
