"""A team's quantgate project: the files quantgate ships, and the repository a team keeps.

quantgate is installed with ``pip``; a team's own repository (``QUANTGATE_PROJECT_DIR``, default
the current directory) holds only what is theirs::

    policies/            gate policies (``policies/default.yaml`` starts as a copy of quantgate's)
    registry/models/     one onboarding YAML per governed source model
    registry/model_card.md.j2   optional: overrides the card template quantgate ships
    monitoring/          one drift spec per watched model

Shipped with the package (``quantgate/templates/``): the model-card template, the default
policy and the permissive one (in the source tree, links to ``registry/model_card.md.j2``,
``policies/default.yaml`` and ``policies/permissive.yaml``, so there is one file of each), and
the files ``quantgate init`` writes.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from quantgate.errors import ConfigError
from quantgate.settings import Settings, get_settings

CARD_TEMPLATE = Path("registry") / "model_card.md.j2"
DEFAULT_POLICY = Path("policies") / "default.yaml"
PERMISSIVE_POLICY = Path("policies") / "permissive.yaml"
_SCAFFOLD = "scaffold"


def packaged_file(name: str) -> Path:
    """A file under ``quantgate/templates/`` of the installed package (a plain directory: quantgate
    is never imported from a zip)."""
    path = Path(str(resources.files("quantgate").joinpath("templates", name)))
    if not path.is_file():
        raise ConfigError(f"quantgate's packaged file {name} is missing ({path})", "reinstall quantgate")
    return path


def model_card_template(settings: Settings | None = None) -> Path:
    """The project's ``registry/model_card.md.j2`` if it has one (a team's edited card wins),
    else the template quantgate ships."""
    own = (settings or get_settings()).path(CARD_TEMPLATE)
    return own if own.is_file() else packaged_file("model_card.md.j2")


def default_policy_text() -> str:
    return packaged_file("default_policy.yaml").read_text()


def _scaffold_files() -> dict[Path, str]:
    """``{relative path: text}`` of what ``quantgate init`` writes (``*.example`` files are examples
    that the nightly sweep and the monitor never read)."""
    root = Path(str(resources.files("quantgate").joinpath("templates", _SCAFFOLD)))
    files = {
        p.relative_to(root): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
    header = (
        "# Copied from quantgate's default policy by `quantgate init`: this copy is yours to tighten.\n"
        "# Onboarding files name it as `policy: policies/default.yaml` (the default when they name none).\n"
    )
    files[DEFAULT_POLICY] = header + default_policy_text()
    files[PERMISSIVE_POLICY] = (
        "# Copied from quantgate's permissive policy by `quantgate init`: group and flip rules only warn.\n"
        + packaged_file("permissive_policy.yaml").read_text()
    )
    files[Path(".gitignore")] = ".quantgate/\n"  # QUANTGATE_HOME's default (a dot file is no package data)
    return files


def init_project(directory: Path) -> list[Path]:
    """Scaffold a team's quantgate repository in ``directory`` (created if missing).

    Refuses, writing nothing, when any file it would write already exists.
    """
    files = _scaffold_files()
    target = Path(directory)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} exists and is not a directory")
    existing = [str(rel) for rel in files if (target / rel).exists()]
    if existing:
        raise ConfigError(
            f"refusing to overwrite {', '.join(existing)} in {target}",
            "quantgate init only writes files that do not exist yet",
        )
    written = []
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
