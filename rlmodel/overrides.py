"""`KEY=VALUE` overrides typed like the setting they replace: one coercion for `rlsched train --set`
(hyperparameters), `--testbed-set`/`--set` (testbed settings) and values read from TOML files."""

from __future__ import annotations

import math
from typing import Any

_KIND_NAMES = {int: "a whole number", float: "a finite number", str: "a string", bool: "true or false",
               dict: "a table of strings (from text: a JSON object)"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class CoercionError(ValueError):
    """`value` cannot be given to a setting of this type; the message says what is expected."""


def split_pair(pair: str) -> tuple[str, str]:
    """("key", "value") from "key=value" (key stripped, dashes as underscores); CoercionError without "="."""
    key, sep, raw = pair.partition("=")
    if not sep or not key.strip():
        raise CoercionError("expected KEY=VALUE")
    return key.strip().replace("-", "_"), raw


def coerce(current: Any, value: Any, *, from_text: bool) -> Any:
    """`value` converted to the type of `current` (bool, int, float, str, or a dict of strings).

    `from_text`: `value` comes from a command line or an environment variable (a string to parse);
    otherwise from TOML, where the type must already match (an int is accepted for a float).
    Booleans from text are 1/true/yes/on or 0/false/no/off (anything else is refused, never False);
    floats must be finite. Raises CoercionError saying what was expected.
    """
    kind = type(current)
    try:
        if kind is dict:  # a table of names: from TOML a table, from text a JSON object
            if from_text and isinstance(value, str):
                import json

                value = json.loads(value)
            if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                      for k, v in value.items()):
                raise ValueError
            return dict(value)
        if kind is bool:
            if from_text and isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            out: Any = int(value.strip()) if from_text and isinstance(value, str) else value
            if not isinstance(out, int):
                raise ValueError
            return out
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value) if (from_text and isinstance(value, str)) or isinstance(value, int) else value
            if not isinstance(out, float) or not math.isfinite(out):
                raise ValueError
            return out
        if not isinstance(value, str):
            raise ValueError
        return value
    except (ValueError, OverflowError):
        raise CoercionError(f"expected {_KIND_NAMES.get(kind, kind.__name__)}, got {value!r}") from None
