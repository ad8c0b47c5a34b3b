"""How a model is onboarded: ``registry/models/<name>.yaml`` or tags on the source version.

Keys (both places): task, label, calibration_data, evaluation_data, reference_data,
sensitive_attributes, slices, policy, recipe; for ``task: text-generation`` (a causal language
model) also text_column and prompts, and no label. On a source version the same keys are tags named
``quantgate.<key>`` (lists comma-separated). **The YAML file wins** key by key: a tag fills in
only what the file leaves out, so a reviewed file in git can never be silently overridden by
someone editing tags in the UI.

A tag that names a file (``policy``, the ``*_data`` keys, a ``recipe`` ending in ``.json``) may
only name one inside the project directory, relative to it: no absolute path, no ``..``, no
``${VAR}`` or ``~`` expansion, nothing that resolves (through a symbolic link) outside it
(:func:`tag_path_refusal`). Whoever can register a source version can set its tags; they must
not be able to choose any file on the worker. The onboarding file, reviewed in git, keeps its
paths as they are (absolute, ``${QUANTGATE_HOME}``, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quantgate.errors import ConfigError, read_config_text
from quantgate.retrain.spec import RetrainSpec
from quantgate.settings import Settings, get_settings

ONBOARDING_KEYS = (
    "task",
    "label",
    "calibration_data",
    "evaluation_data",
    "reference_data",
    "sensitive_attributes",
    "slices",
    "policy",
    "recipe",
    "description",
    "input_columns",
    "classes",
    "output",
    "target",
    "text_column",
    "prompts",
)
LIST_KEYS = {"sensitive_attributes", "slices", "input_columns", "classes"}
#: keys whose value names a file (``recipe`` only when it ends in ``.json``: else a recipe name)
PATH_KEYS = ("policy", "calibration_data", "evaluation_data", "reference_data", "recipe", "prompts")
#: how a tag names such a file, for the refusal's hint
_PATH_EXAMPLES = {
    "policy": "policies/my-policy.yaml",
    "recipe": "recipes/my-recipe.json",
    "prompts": "data/my-model/prompts.txt",
}
#: the task of a causal language model (the ``transformers`` flavor's ``text-generation``)
TEXT_GENERATION = "text-generation"


class ModelConfig(BaseModel):
    """What quantgate needs to know about a source model to govern it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    task: Literal[
        "tabular-classification",
        "text-classification",
        "tensor-classification",
        "pyfunc-classification",
        "tabular-regression",
        "tensor-regression",
        "text-generation",
    ] = Field(
        default="tensor-classification",
        description="a classifier's task is informational (the source kind decides how it is read); a *-regression "
        "task reads one continuous value per row and is judged by the policy's regression_rules "
        "(docs/regression.md); text-generation governs a causal language model (no label)",
    )
    label: str = Field(
        default="", description="the label (or regression target) column; required but for text-generation"
    )
    calibration_data: str
    evaluation_data: str
    reference_data: str | None = None
    sensitive_attributes: list[str] = Field(default_factory=list)
    slices: list[str] = Field(default_factory=list, description="extra columns to report per group")
    policy: str = "policies/default.yaml"
    recipe: str = Field(default="auto", description="'auto' searches recipes under the policy; or a recipe name")
    description: str | None = None
    input_columns: list[str] | None = Field(
        default=None, description="feature columns, in the model's order, for a tensor signature without names"
    )
    classes: list[str | int | float | bool] | None = Field(
        default=None, description="the model's classes in output order (default: from its output and the labels)"
    )
    target: Literal["auto", "avx2", "avx512", "avx512_vnni", "arm64"] | None = Field(
        default=None,
        description="the CPU ISA the candidate is built and gated for; auto = this host; "
        "unset = the policy's target (else auto)",
    )
    output: Literal["auto", "logits", "probabilities", "labels"] = Field(
        default="auto", description="how to read the model's scores; auto decides from the values"
    )
    retrain: RetrainSpec | None = Field(
        default=None, description="how drift retrains the source model (file only, never from tags)"
    )
    text_column: str = Field(default="text", description="text-generation: the column holding the passages")
    prompts: str | None = Field(
        default=None,
        description="text-generation: a file of prompts (one a line) whose greedy continuations fp32 and the "
        "candidate are compared on, beside the prompts cut from the evaluation passages",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _label_reported(cls, data: Any, handler: Any) -> Any:
        """A classifier's missing label is named with the other missing keys (the check below
        runs only once every field is valid)."""
        needs_label = (
            isinstance(data, dict)
            and data.get("task", "tensor-classification") != TEXT_GENERATION
            and not data.get("label")
        )
        try:
            return handler(data)
        except ValidationError as exc:
            if not needs_label or any(e["loc"] == ("label",) for e in exc.errors()):
                raise
            details = [{k: e[k] for k in ("type", "loc", "input", "ctx") if k in e} for e in exc.errors()]
            details.append({"type": "missing", "loc": ("label",), "input": data})
            raise ValidationError.from_exception_data(cls.__name__, details) from None  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _task_keys(self) -> ModelConfig:
        if self.task == TEXT_GENERATION:
            if self.label or self.sensitive_attributes or self.classes or self.input_columns:
                raise ValueError(
                    "a text-generation model has no label, sensitive_attributes, classes or input_columns: "
                    "name its text_column and slices"
                )
        else:
            if not self.label:
                raise ValueError("label: Field required (the column holding the labels, or a regressor's target)")
            if self.prompts:
                raise ValueError("prompts: is for task: text-generation only")
        return self

    @model_validator(mode="after")
    def _regression_has_no_classes(self) -> ModelConfig:
        if self.is_regression and self.classes:
            raise ValueError(
                f"a {self.task} model has no classes; remove classes: (a regressor answers one continuous value per "
                "row), or set task: to a *-classification kind"
            )
        if self.is_regression and self.output != "auto":
            raise ValueError(f"output: {self.output} reads class scores; a {self.task} model takes output: auto")
        return self

    @property
    def is_regression(self) -> bool:
        """A regressor: one continuous value per row, judged by the policy's ``regression_rules``."""
        return self.task.endswith("-regression")

    def resolve(self, rel: str, settings: Settings | None = None) -> Path:
        """Expand ``${QUANTGATE_HOME}`` and friends; relative paths are from the project dir."""
        return (settings or get_settings()).path(rel)

    def target_for(self, policy_target: str | None = None) -> str:
        """The effective target: the onboarding's, else the policy's default, else ``auto``."""
        return self.target or policy_target or "auto"

    @property
    def group_columns(self) -> list[str]:
        return [*self.sensitive_attributes, *self.slices]


def _tags_to_keys(tags: dict[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key in ONBOARDING_KEYS:
        v = tags.get(f"quantgate.{key}")
        if v is None:
            continue
        out[key] = [s.strip() for s in v.split(",") if s.strip()] if key in LIST_KEYS else v
    return out


def tag_path_refusal(key: str, value: str, project_dir: Path) -> str | None:
    """Why the value of tag ``quantgate.<key>`` may not name a file, or None when it may: it must
    be a path relative to ``project_dir`` that stays inside it once resolved, with nothing a
    resolver would expand. Keys that name no file (and recipe names) are never refused here."""
    if key not in PATH_KEYS or (key == "recipe" and Path(value).suffix != ".json"):  # as steps.quantize reads it
        return None
    if not value.strip():
        return "it names no file"
    if "$" in value:
        return "it would expand an environment variable"
    if value.startswith("~"):
        return "it would expand a home directory ('~')"
    if "\x00" in value:
        return "it contains a NUL character"
    rel = Path(value)
    if rel.is_absolute():
        return "it is an absolute path"
    if ".." in rel.parts:
        return "it climbs with '..'"
    root = project_dir.expanduser().resolve()
    try:
        resolved = (root / rel).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        return f"it cannot be resolved ({exc})"
    if not resolved.is_relative_to(root):
        return f"it resolves outside the project directory, to {resolved} (a symbolic link)"
    return None


def check_tag_paths(name: str, from_tags: dict[str, object], project_dir: Path) -> None:
    """Refuse, by tag and value, the first file-naming tag that :func:`tag_path_refusal` refuses.
    ``from_tags``: the onboarding keys whose value comes from a tag of the source version."""
    for key in PATH_KEYS:
        value = from_tags.get(key)
        if not isinstance(value, str):
            continue
        reason = tag_path_refusal(key, value, project_dir)
        if reason is None:
            continue
        example = _PATH_EXAMPLES.get(key, f"data/{name}/{key.removesuffix('_data')}.parquet")
        raise ConfigError(
            f"tag quantgate.{key}={value!r} on the source version of '{name}' is refused: {reason}; a tag may "
            f"only name a file inside the project directory {project_dir.expanduser().resolve()}, relative to it",
            f"put the file in the project and name it relatively (quantgate.{key}={example}), or onboard "
            f"'{name}' with a reviewed registry/models/{name}.yaml (which may name any path)",
        )


def onboarding_file(name: str, settings: Settings | None = None) -> Path:
    s = settings or get_settings()
    return s.path(Path("registry") / "models" / f"{name}.yaml")


def load_model_config(name: str, tags: dict[str, str] | None = None, settings: Settings | None = None) -> ModelConfig:
    """Merge the onboarding file (wins) over ``quantgate.*`` tags of the source version. A tag
    that fills in a file-naming key must name a file inside the project (:func:`check_tag_paths`)."""
    s = settings or get_settings()
    path = onboarding_file(name, s)
    from_tags = _tags_to_keys(tags or {})
    data: dict[str, object] = dict(from_tags)
    source = f"tags of {name}"
    if path.exists():
        try:
            file_data = yaml.safe_load(read_config_text(path, "onboarding file")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
        if not isinstance(file_data, dict):
            raise ConfigError(f"{path} must be a YAML mapping")
        data.update(file_data)
        from_tags = {k: v for k, v in from_tags.items() if k not in file_data}
        source = str(path)
    check_tag_paths(name, from_tags, s.project_dir)
    data.setdefault("name", name)
    if data["name"] != name:
        raise ConfigError(f"{path}: name '{data['name']}' does not match the file name '{name}'")
    if len(data) <= 1:
        raise ConfigError(
            f"model '{name}' is not onboarded",
            f"create {path} (see registry/README.md) or set quantgate.* tags on the source version",
        )
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        parts = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e["loc"])
            msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
        raise ConfigError(f"invalid onboarding for '{name}' ({source}): " + "; ".join(parts)) from None
