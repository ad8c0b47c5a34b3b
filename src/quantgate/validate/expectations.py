"""Team overrides of the derived suite: ``policies/expectations/<model>.yaml``, validated strictly.

The derived suite (:mod:`quantgate.validate.gx_suite`) knows only what the reference data shows;
a team knows more (ages are 17..90 by the census rules, not "what we happened to see +/- 10%").
The file is reviewed like code, so a typo must be an error that names it, never a silently
skipped check: an unknown expectation type, an unknown keyword, a duplicate YAML key, a bad
value for a GX parameter or an unknown check name under ``remove`` are all :class:`ConfigError`.

Format (a bare list is the same as ``expectations:`` alone)::

    expectations:
      - expectation: ExpectColumnValuesToBeBetween   # GX 1.x class name (or snake_case type)
        column: age
        min_value: 17
        max_value: 90
      - expectation: ExpectColumnValuesToBeInSet
        name: "sex: census categories"               # optional check name in the report
        column: sex
        value_set: [Female, Male]
    remove:                                          # derived checks to drop, by report name
      - "fnlwgt: within range"

An expectation of the same GX type on the same column as a derived one *replaces* it (this is
how a team widens or narrows a derived bound); any other is added. The row-count check comes
from the gate policy's ``calibration.min_rows`` and cannot be removed or replaced here.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from quantgate.errors import ConfigError
from quantgate.validate._gx import import_gx

if TYPE_CHECKING:
    from great_expectations.expectations.expectation import Expectation

#: GX fields quantgate sets itself (meta carries the check name) or that do not apply here
RESERVED_KEYS = frozenset(
    {"id", "meta", "rendered_content", "batch_id", "windows", "result_format", "catch_exceptions", "severity"}
)
#: GX expectations that need SQL or a second table; they cannot run on one pandas frame
UNSUPPORTED = frozenset(
    {
        "Expectation",
        "UnexpectedRowsExpectation",
        "ExpectQueryResultsToMatchComparison",
        "ExpectTableRowCountToEqualOtherTable",
    }
)
#: keyword arguments that name columns; checked against the reference columns when applied
COLUMN_KEYS = ("column", "column_A", "column_B")
COLUMN_LIST_KEYS = ("column_list",)


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation from the file: its GX class name, optional check name and keyword args."""

    index: int
    type: str
    kwargs: dict[str, Any]
    name: str | None = None

    @property
    def columns(self) -> list[str]:
        """Columns this expectation reads (to refuse a column the reference does not have)."""
        out = [str(self.kwargs[k]) for k in COLUMN_KEYS if k in self.kwargs]
        for k in COLUMN_LIST_KEYS:
            out += [str(c) for c in self.kwargs.get(k) or []]
        return out

    @property
    def column(self) -> str | None:
        col = self.kwargs.get("column")
        return None if col is None else str(col)

    def build(self, meta: dict[str, Any] | None = None) -> Expectation:
        """The GX expectation object (GX validates the keyword arguments here)."""
        cls = _expectation_classes()[self.type]
        return cls(**self.kwargs, **({"meta": meta} if meta is not None else {}))

    def describe(self) -> str:
        """``Type k=v, ...`` without the column, for the report's "expected" cell."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items() if k != "column")
        return f"{self.type} {args}".strip()


@dataclass(frozen=True)
class ExpectationOverrides:
    """A parsed, validated expectations file."""

    source: str
    expectations: tuple[ExpectationSpec, ...] = ()
    remove: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_CLASSES: dict[str, type[Expectation]] | None = None


def _expectation_classes() -> dict[str, type[Expectation]]:
    """GX 1.x expectation classes usable on a pandas frame, by class name (GX imported lazily)."""
    global _CLASSES
    if _CLASSES is None:
        from great_expectations.expectations.expectation import Expectation

        gx = import_gx()

        _CLASSES = {
            n: getattr(gx.expectations, n)
            for n in dir(gx.expectations)
            if isinstance(getattr(gx.expectations, n), type)
            and issubclass(getattr(gx.expectations, n), Expectation)
            and n not in UNSUPPORTED
        }
    return _CLASSES


def _resolve_type(raw: str, where: str, source: str) -> str:
    classes = _expectation_classes()
    if raw in classes:
        return raw
    by_snake = {_snake(n): n for n in classes}
    if raw in by_snake:
        return by_snake[raw]
    if raw in UNSUPPORTED:
        raise ConfigError(f"{source}: {where}: '{raw}' needs SQL or a second table and cannot run on calibration data")
    close = difflib.get_close_matches(raw, [*classes, *by_snake], n=1)
    hint = f"did you mean {close[0]}?" if close else "use a GX 1.x class name such as ExpectColumnValuesToBeBetween"
    raise ConfigError(f"{source}: {where}: unknown expectation '{raw}'", hint)


def _gx_error(exc: Exception) -> str:
    """GX's pydantic (v1) errors as ``key: message; ...``, one message per key."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    by_key: dict[str, str] = {}
    root: list[str] = []
    for e in errors():
        loc = ".".join(str(x) for x in e.get("loc", ()))
        msg = "unknown key" if e.get("type") == "value_error.extra" else str(e.get("msg", "invalid"))
        if loc in ("", "__root__"):
            root.append(msg)
        else:
            by_key.setdefault(loc, msg)
    parts = [f"{k}: {m}" for k, m in by_key.items()] or root
    return "; ".join(parts)


def _parse_item(item: Any, i: int, source: str) -> ExpectationSpec:
    where = f"expectations.{i}"
    if not isinstance(item, dict):
        raise ConfigError(
            f"{source}: {where}: expected a mapping with 'expectation' and its arguments, got {type(item).__name__}"
        )
    bad = [k for k in item if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{source}: {where}: keys must be strings, got {bad[0]!r}")
    if "expectation" not in item:
        raise ConfigError(f"{source}: {where}: missing 'expectation' (the GX expectation class name)")
    raw_type = item["expectation"]
    if not isinstance(raw_type, str) or not raw_type:
        raise ConfigError(f"{source}: {where}.expectation: must be a GX expectation class name")
    type_name = _resolve_type(raw_type, f"{where}.expectation", source)
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ConfigError(f"{source}: {where}.name: must be a non-empty string")
    kwargs = {k: v for k, v in item.items() if k not in ("expectation", "name")}
    reserved = sorted(set(kwargs) & RESERVED_KEYS)
    if reserved:
        raise ConfigError(
            f"{source}: {where}.{reserved[0]}: not allowed in an expectations file",
            "quantgate sets it; every expectation here blocks (use remove: to drop a derived check)",
        )
    spec = ExpectationSpec(index=i, type=type_name, kwargs=kwargs, name=name.strip() if name else None)
    try:
        spec.build()
    except Exception as exc:  # GX validates its arguments with pydantic (v1)
        raise ConfigError(f"{source}: {where} ({type_name}): {_gx_error(exc)}") from None
    return spec


def parse_expectations(text: str, source: str = "<string>") -> ExpectationOverrides:
    """Parse and validate an expectations file's text; every mistake is a :class:`ConfigError`."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or (first[0] if first else "invalid YAML")
        raise ConfigError(f"{source} is not valid YAML: {problem}{at}") from None
    if data is None:
        raise ConfigError(f"{source} is empty", "list expectations under 'expectations:' or delete the file")
    if isinstance(data, list):
        items, remove = data, []
    elif isinstance(data, dict):
        unknown = sorted(str(k) for k in data if k not in ("expectations", "remove"))
        if unknown:
            raise ConfigError(f"{source}: {unknown[0]}: unknown key", "allowed top-level keys: expectations, remove")
        items, remove = data.get("expectations") or [], data.get("remove") or []
        if not isinstance(items, list):
            raise ConfigError(f"{source}: expectations: must be a list")
    else:
        raise ConfigError(f"{source} must be a list of expectations or a mapping with 'expectations' / 'remove'")
    if not isinstance(remove, list) or not all(isinstance(r, str) and r.strip() for r in remove):
        raise ConfigError(f"{source}: remove: must be a list of check names, e.g. ['fnlwgt: within range']")
    dupes = sorted({r for r in remove if remove.count(r) > 1})
    if dupes:
        raise ConfigError(f"{source}: remove: '{dupes[0]}' is listed twice")
    specs = tuple(_parse_item(item, i, source) for i, item in enumerate(items))
    names = [s.name for s in specs if s.name]
    dup_names = sorted({n for n in names if names.count(n) > 1})
    if dup_names:
        raise ConfigError(f"{source}: two expectations are named '{dup_names[0]}'", "give each a unique name")
    return ExpectationOverrides(source=source, expectations=specs, remove=tuple(r.strip() for r in remove))


def load_expectations(path: str | Path) -> ExpectationOverrides:
    """Read and validate ``policies/expectations/<model>.yaml``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"expectations file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read expectations file {p}: {exc}", "save it as UTF-8 YAML") from None
    return parse_expectations(text, str(p))
