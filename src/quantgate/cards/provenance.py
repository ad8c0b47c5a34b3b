"""Provenance of a quantized candidate: an in-toto Statement v1 with a SLSA provenance v1 predicate.

Pure apart from reading the files it digests (and ``git rev-parse`` for the code version, in
quantgate's own checkout only): it takes a directory and values and returns a dict. MLflow I/O
lives in :mod:`quantgate.cards.trust`.

- **Subjects** are every file of the logged MLflow model directory (``MLmodel``,
  ``python_model.pkl``, ``artifacts/module.pt``, ...), named by their POSIX path relative to it.
- **Resolved dependencies** are the source model version (with the digest of its artifact tree),
  the calibration / evaluation / reference data, the policy file, the recipe, the code and the key
  package versions.
- **Tree digest**: ``sha256`` over the lines ``"<sha256-hex>  <relpath>\\n"`` sorted by path, i.e.
  the output of ``find . -type f | sort | xargs sha256sum`` with the ``./`` prefix removed.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:quantgate:buildtype:quantize:v1"
# the dependencies named here are well known: verification looks them up by name
DEP_SOURCE = "source_model"
DEP_POLICY = "policy"
DEP_RECIPE = "recipe"
DEP_CODE = "quantgate"
#: the runDetails byproduct holding the gate's result: verdict, policy, rule outcomes and every
#: result tag the registered version carries (what approval, promotion and serving decide from)
GATE_BYPRODUCT = "gate"
KEY_PACKAGES = (
    "torch",
    "torchao",
    "optimum-quanto",
    "transformers",
    "mlflow",
    "prefect",
    "numpy",
    "pandas",
    "great-expectations",
    "evidently",
    "huggingface-hub",
    "cryptography",
)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, the one file hash of quantgate.

    ``hashlib.file_digest`` streams the file (the MiniLM module is ~90 MB) without a
    hand-written chunk loop; :func:`quantgate.data.datasets.file_digest` is this with a prefix.
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def digest_tree(directory: Path) -> dict[str, str]:
    """``{relative POSIX path: sha256 hex}`` for every regular file under ``directory``.

    Symbolic links are followed (their target's bytes are what a loader reads); directories
    themselves carry no digest, so an empty directory is invisible, as it is to a model loader.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"not a directory: {root}")
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def tree_digest(files: Mapping[str, str]) -> str:
    """One ``sha256:`` digest for a whole tree (see the module docstring for the exact bytes)."""
    manifest = "".join(f"{files[k]}  {k}\n" for k in sorted(files))
    return "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()


def policy_file_digest(path: Path) -> str:
    """The digest quantgate records for a policy: the one ``quantgate.policy.load_policy`` computes
    (sha256 of the file's text), so it equals the ``quantgate.policy_digest`` tag."""
    return "sha256:" + hashlib.sha256(Path(path).read_text().encode()).hexdigest()


def digest_set(digest: str | Mapping[str, str]) -> dict[str, str]:
    """``"sha256:ab.."`` (or a bare 64-hex sha256, or a DigestSet) -> ``{"sha256": "ab.."}``."""
    if isinstance(digest, Mapping):
        return {str(k): str(v) for k, v in digest.items()}
    algo, sep, value = digest.partition(":")
    if not sep:
        algo, value = "sha256", digest
    return {algo: value}


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def quantgate_checkout(package_dir: Path | None = None) -> Path | None:
    """The root of quantgate's own git checkout when the package runs from one (``src/quantgate``
    under a directory with a ``.git`` and a ``pyproject.toml`` naming the ``quantgate`` project),
    else None: an installed quantgate inside a team's repository is not that repository's code."""
    pkg = (package_dir or Path(__file__).resolve().parents[1]).resolve()
    root = pkg.parent.parent
    if pkg.parent.name != "src" or not (root / ".git").exists():  # a worktree's .git is a file
        return None
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return root if project.get("name") == "quantgate" else None


def code_version(package_dir: Path | None = None) -> dict[str, Any]:
    """The installed quantgate distribution's version, plus the git commit (and whether the tree is
    dirty) only when the package runs from a git checkout of quantgate itself (see
    :func:`quantgate_checkout`). Local only: ``git rev-parse``, never a fetch."""
    try:
        out: dict[str, Any] = {"version": version("quantgate")}
    except PackageNotFoundError:
        out = {"version": "unknown"}
    root = quantgate_checkout(package_dir)
    if root is None:
        return out
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        if commit.returncode == 0 and commit.stdout.strip():
            out["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            out["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def prefect_builder(
    *,
    flow_run_id: str | None = None,
    flow_run_name: str | None = None,
    flow_name: str | None = None,
    deployment_id: str | None = None,
    deployment_name: str | None = None,
    started_on: str | None = None,
) -> dict[str, Any]:
    """The ``builder`` argument of :func:`build_statement` for a Prefect run (values from
    ``prefect.runtime``; the engine never imports Prefect itself).

    ``id`` names the trust boundary that built the candidate: the deployment when there is one
    (scheduled / worker runs), else the flow run ad hoc (CLI, tests), else the local CLI.
    """
    if deployment_name or deployment_id:
        builder_id = f"prefect:deployment/{deployment_name or deployment_id}"
    elif flow_run_id:
        builder_id = f"prefect:flow/{flow_name or 'quantize-model'}"
    else:
        builder_id = "quantgate:local"
    info: dict[str, Any] = {"id": builder_id}
    for k, v in {
        "flow_run_id": flow_run_id,
        "flow_run_name": flow_run_name,
        "flow_name": flow_name,
        "deployment_id": deployment_id,
        "deployment_name": deployment_name,
        "started_on": started_on,
    }.items():
        if v:
            info[k] = v
    return info


def materials_from_context(ctx: Mapping[str, Any], *, policy_path: str | Path | None = None) -> dict[str, Any]:
    """The ``materials`` argument of :func:`build_statement`, from ``pipeline.card_context(...)``.

    ``policy_path`` is the policy file as the flow resolved it (``--policy`` or the onboarding's
    ``policy:``), kept as given: a project-relative path stays portable across machines.
    """
    out: dict[str, Any] = {}
    data = ctx.get("data", {})
    for role, digest in sorted(data.get("digests", {}).items()):
        out[f"{role}_data"] = {"digest": digest, "path": data.get("paths", {}).get(role)}
    pol = ctx.get("policy", {})
    if pol.get("digest"):
        path = policy_path if policy_path is not None else ctx.get("config", {}).get("policy")
        out[DEP_POLICY] = {"digest": pol["digest"], "path": str(path) if path else None, "name": pol.get("name")}
    rec = ctx.get("recipe", {})
    if rec.get("digest"):
        out[DEP_RECIPE] = {"digest": rec["digest"], "label": rec.get("label"), "json": rec.get("json")}
    return out


def _descriptor(name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A SLSA ResourceDescriptor from ``{"digest", "uri"?, ...annotations}``."""
    if not spec.get("digest"):
        raise ValueError(f"material '{name}' has no digest")
    desc: dict[str, Any] = {"name": name, "digest": digest_set(spec["digest"])}
    if spec.get("uri"):
        desc["uri"] = str(spec["uri"])
    notes = {k: v for k, v in spec.items() if k not in ("digest", "uri") and v is not None}
    if notes:
        desc["annotations"] = notes
    return desc


def build_statement(
    model_dir: Path,
    *,
    name: str,
    source: Mapping[str, Any],
    materials: Mapping[str, Mapping[str, Any]],
    builder: Mapping[str, Any],
    code: Mapping[str, Any] | None = None,
    packages: Mapping[str, str] | None = None,
    files: Mapping[str, str] | None = None,
    gate: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The in-toto Statement for the model directory ``model_dir`` (registered as ``name``).

    - ``source``: ``{"name", "version", "digest"` (tree digest of its artifact), "uri"?, "files"?}``;
      ``uri`` defaults to ``models:/<name>/<version>``.
    - ``materials``: ``{dependency name: {"digest": "sha256:..", "uri"?, anything else -> annotations}}``;
      :func:`materials_from_context` builds it. A ``policy`` entry with a ``path`` is what
      verification re-digests.
    - ``builder``: ``{"id", ...}``; :func:`prefect_builder` builds it.
    - ``code`` / ``packages`` default to :func:`code_version` / :func:`package_versions`;
      ``files`` to :func:`digest_tree` of ``model_dir`` (pass it when already computed).
    - ``gate``: the gate's result (:func:`gate_summary`), signed as the ``gate`` byproduct: the
      verdict and the result tags live in the signature, not only in writable registry tags.
    """
    files = dict(files) if files is not None else digest_tree(Path(model_dir))
    if not files:
        raise ValueError(f"model directory {model_dir} has no files")
    if not builder.get("id"):
        raise ValueError("builder has no 'id'")
    for key in ("name", "version", "digest"):
        if not source.get(key):
            raise ValueError(f"source has no '{key}'")
    code = dict(code) if code is not None else code_version()
    packages = dict(packages) if packages is not None else package_versions()

    src_uri = source.get("uri") or f"models:/{source['name']}/{source['version']}"
    src_notes: dict[str, Any] = {"registered_model": source["name"], "version": str(source["version"])}
    if source.get("files"):
        src_notes["files"] = dict(source["files"])
    deps = [{"name": DEP_SOURCE, "uri": src_uri, "digest": digest_set(source["digest"]), "annotations": src_notes}]
    deps += [_descriptor(k, v) for k, v in materials.items()]
    code_digest = {"gitCommit": code["git_commit"]} if code.get("git_commit") else {}
    deps.append(
        {
            "name": DEP_CODE,
            "uri": f"pkg:pypi/quantgate@{code.get('version', 'unknown')}",
            **({"digest": code_digest} if code_digest else {}),
            "annotations": dict(code),
        }
    )
    deps += [{"name": pkg, "uri": f"pkg:pypi/{pkg}@{ver}"} for pkg, ver in sorted(packages.items())]

    ext: dict[str, Any] = {"name": name, "source": f"{source['name']}/{source['version']}"}
    if DEP_RECIPE in materials:
        ext["recipe"] = materials[DEP_RECIPE].get("json") or materials[DEP_RECIPE].get("label")
    if DEP_POLICY in materials and materials[DEP_POLICY].get("path"):
        ext["policy"] = str(materials[DEP_POLICY]["path"])

    meta: dict[str, Any] = {"finishedOn": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if builder.get("flow_run_id"):
        meta["invocationId"] = str(builder["flow_run_id"])
    if builder.get("started_on"):
        meta["startedOn"] = str(builder["started_on"])
    run_info = {k: v for k, v in builder.items() if k not in ("id", "started_on")}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": rel, "digest": {"sha256": files[rel]}} for rel in sorted(files)],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": ext,
                "internalParameters": {"python": platform.python_version(), "platform": platform.platform()},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": str(builder["id"]), "version": {"quantgate": str(code.get("version", "unknown"))}},
                "metadata": meta,
                "byproducts": [
                    {"name": "artifact_tree", "digest": digest_set(tree_digest(files))},
                    *([{"name": "prefect_run", "annotations": run_info}] if run_info else []),
                    *([{"name": GATE_BYPRODUCT, "annotations": dict(gate)}] if gate is not None else []),
                ],
            },
        },
    }


def dependency(statement: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """The resolvedDependencies entry called ``name`` (or None)."""
    try:
        deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    except (KeyError, TypeError):
        return None
    for d in deps if isinstance(deps, list) else []:
        if isinstance(d, dict) and d.get("name") == name:
            return d
    return None


def subject_digests(statement: Mapping[str, Any]) -> dict[str, str]:
    """``{subject name: sha256 hex}``; raises ValueError on a malformed subject list."""
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise ValueError("statement has no subjects")
    out = {}
    for s in subjects:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(s.get("digest"), dict):
            raise ValueError(f"malformed subject: {s!r}")
        if "sha256" not in s["digest"]:
            raise ValueError(f"subject {s['name']} has no sha256 digest")
        if s["name"] in out:
            raise ValueError(f"subject {s['name']} appears twice")
        out[s["name"]] = str(s["digest"]["sha256"])
    return out


def gate_summary(
    *,
    verdict: str,
    policy_name: str,
    policy_digest: str,
    rules: Mapping[str, str],
    tags: Mapping[str, str],
) -> dict[str, Any]:
    """The ``gate`` argument of :func:`build_statement`: the verdict (``pass``/``fail``), the policy
    (name, digest), each rule's outcome, and the result tags the version is registered with."""
    if verdict not in ("pass", "fail"):
        raise ValueError(f"verdict must be pass or fail, not {verdict!r}")
    return {
        "verdict": verdict,
        "policy": {"name": policy_name, "digest": policy_digest},
        "rules": {str(k): str(v) for k, v in rules.items()},
        "tags": {str(k): str(v) for k, v in sorted(tags.items())},
    }


def signed_gate(statement: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The ``gate`` byproduct of a statement (None when absent: signed before gates were signed)."""
    try:
        byproducts = statement["predicate"]["runDetails"]["byproducts"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    for b in byproducts if isinstance(byproducts, list) else []:
        if isinstance(b, dict) and b.get("name") == GATE_BYPRODUCT and isinstance(b.get("annotations"), dict):
            return dict(b["annotations"])
    return None


def artifact_tree_digest(statement: Mapping[str, Any]) -> str | None:
    """The ``artifact_tree`` byproduct's digest as ``sha256:<hex>`` (the version's artifact_digest tag)."""
    try:
        byproducts = statement["predicate"]["runDetails"]["byproducts"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    for b in byproducts if isinstance(byproducts, list) else []:
        if isinstance(b, dict) and b.get("name") == "artifact_tree":
            hexd = (b.get("digest") or {}).get("sha256")
            return f"sha256:{hexd}" if hexd else None
    return None
