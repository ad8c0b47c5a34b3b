"""Errors a user can act on.

Every failure that reaches the CLI is a :class:`QuantgateError`: one line that says what is
wrong and how to fix it. Anything else is a bug and shows a traceback with ``--debug``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd


def first_rows(index: pd.Index, limit: int = 5) -> str:
    """The rows a data error names: '2, 5', or the first ``limit`` of them and '...'."""
    return ", ".join(map(repr, index[:limit].tolist())) + (", ..." if len(index) > limit else "")


def read_config_text(path: str | Path, what: str) -> str:
    """The text of a configuration file (``what``: "policy file", "recipe file", ...), or a
    :class:`ConfigError` naming it when it is a directory, unreadable or not UTF-8 text."""
    from pathlib import Path as _Path

    p = _Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError(f"{what} {p} is a directory, not a file", "name the YAML/JSON file itself") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} {p} is not UTF-8 text (byte {exc.start}: {exc.reason})", "save it as UTF-8 text"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{what} {p} cannot be read: {exc.strerror or exc}") from None


class QuantgateError(Exception):
    """A problem with the user's input or environment, reported as one readable line."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(QuantgateError):
    """A YAML file (policy, onboarding, monitoring) that does not match its schema."""


class RegistryError(QuantgateError):
    """A model name, version or alias that is not in the registry, or a refused registry move."""


class DataError(QuantgateError):
    """A data file that is missing, unreadable or of the wrong shape."""


class ValidationFailed(QuantgateError):
    """Calibration data failed its checks; the flow stops before quantization."""


class UnsupportedModel(QuantgateError):
    """A model flavor, layer or op that quantgate cannot quantize."""


class GateFailed(QuantgateError):
    """No candidate could meet the policy (e.g. the recipe search found none)."""


class UnfaithfulReading(QuantgateError):
    """quantgate's reading of a model (inputs, outputs, classes) does not reproduce the model's own
    predictions: nothing it measured could be trusted, so nothing is judged or registered."""


class SweepIncomplete(QuantgateError):
    """A sweep governed what it could but some versions ended in an error: the run is failed, so a
    scheduled sweep never looks green while versions went ungoverned."""
