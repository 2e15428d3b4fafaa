"""Typed stage configs: one dataclass per stage, validated up front, every problem reported at once.

A stage config is a frozen dataclass whose fields carry defaults. ``load_config`` builds one from a
mapping (a YAML/JSON file, CLI flags or KFP parameters), checks every key and type, then asks the
config's own ``problems()`` for the semantic checks, and raises a single ``ConfigError`` naming
every field at fault with the fix.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from monGARS.mlops.errors import ConfigError

ConfigT = TypeVar("ConfigT")


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " | ".join(repr(arg) for arg in get_args(annotation))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation)
        return f"list of {_type_name(item)}"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _coerce(value: Any, annotation: Any) -> tuple[bool, Any]:
    """Return (ok, value) with ``value`` converted to ``annotation`` where that is lossless."""
    origin = get_origin(annotation)
    if origin is Literal:
        return (value in get_args(annotation), value)
    if origin in (Union, types.UnionType):
        for option in get_args(annotation):
            ok, converted = _coerce(value, option)
            if ok:
                return True, converted
        return False, value
    if origin is list:
        (item_type,) = get_args(annotation)
        if isinstance(value, str):  # comma-separated lists from CLI flags and KFP string parameters
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            return False, value
        converted_items = []
        for item in value:
            ok, converted = _coerce(item, item_type)
            if not ok:
                return False, value
            converted_items.append(converted)
        return True, converted_items
    if origin is dict:
        return (isinstance(value, dict), value)
    if annotation is type(None):
        return (value is None, value)
    if annotation is bool:
        if isinstance(value, bool):
            return True, value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
            return True, value.lower() in {"true", "1", "yes"}
        return False, value
    if annotation is int:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, int):
            return True, value
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        if isinstance(value, str):
            try:
                return True, int(value)
            except ValueError:
                return False, value
        return False, value
    if annotation is float:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, int | float):
            return True, float(value)
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if annotation is str:
        return (isinstance(value, str), value)
    return (isinstance(value, annotation), value)


def load_config(cls: type[ConfigT], values: Mapping[str, Any] | None = None) -> ConfigT:
    """Build and validate a config dataclass, raising one ``ConfigError`` listing every problem."""
    values = dict(values or {})
    name = getattr(cls, "CONFIG_NAME", cls.__name__)
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    problems: list[str] = []
    for key in sorted(set(values) - set(fields)):
        problems.append(f"{key}: unknown field; valid fields are {', '.join(sorted(fields))}")
    accepted: dict[str, Any] = {}
    for key, field in fields.items():
        if key not in values:
            has_default = (
                field.default is not dataclasses.MISSING
                or field.default_factory is not dataclasses.MISSING
            )
            if not has_default:
                problems.append(f"{key}: required; give a value of type {_type_name(hints[key])}")
            continue
        ok, converted = _coerce(values[key], hints[key])
        if ok:
            accepted[key] = converted
        else:
            problems.append(f"{key}: expected {_type_name(hints[key])}, got {values[key]!r}"[:300])
    if problems:
        raise ConfigError(name, problems)
    config = cls(**accepted)
    semantic = getattr(config, "problems", None)
    if semantic is not None and (found := semantic()):
        raise ConfigError(name, found)
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config, for artifacts and metadata."""
    return dataclasses.asdict(config)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON mapping, with a one-line error when it is missing or malformed."""
    from monGARS.mlops.errors import MongarsError

    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MongarsError(f"config file {source}: not found; check the path") from None
    except (OSError, UnicodeDecodeError) as error:
        raise MongarsError(f"config file {source}: cannot be read ({error})") from None
    try:
        data = json.loads(text) if source.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        summary = str(error).splitlines()[0]
        raise MongarsError(f"config file {source}: not valid YAML/JSON ({summary})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MongarsError(f"config file {source}: expected a mapping of field: value at top level")
    return data


def config_values_from_cli(config_file: str | None, set_pairs: list[str]) -> dict[str, Any]:
    """A stage's config values from ``--config FILE`` plus ``--set key=value`` flags (these win).

    Values from ``--set`` stay strings; ``load_config`` converts them to the field's type.
    """
    from monGARS.mlops.errors import MongarsError

    values = read_config_file(config_file) if config_file else {}
    for pair in set_pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise MongarsError(f"--set {pair!r}: expected key=value")
        values[key.strip()] = raw
    return values


class Checks:
    """Collects semantic problems in a config's ``problems()`` method."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def require(self, condition: bool, field: str, message: str) -> None:
        if not condition:
            self.found.append(f"{field}: {message}")

    def positive(self, field: str, value: float) -> None:
        self.require(value > 0, field, f"must be > 0 (got {value})")

    def at_least(self, field: str, value: float, minimum: float) -> None:
        self.require(value >= minimum, field, f"must be >= {minimum} (got {value})")

    def fraction(self, field: str, value: float, *, open_right: bool = True) -> None:
        ok = 0 <= value < 1 if open_right else 0 <= value <= 1
        bound = "< 1" if open_right else "<= 1"
        self.require(ok, field, f"must be between 0 and 1 ({'0 <= x ' + bound}; got {value})")
