"""The one config system: YAML files under configs/ loaded into dataclass schemas, with unknown keys refused."""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _coerce(value: Any, kind: Any, key: str) -> Any:
    if kind is str and value is None:  # `--set key=` (an empty YAML value) means the empty string
        return ""
    if kind in (float,) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, str, bool) and not isinstance(value, kind):
        raise ValueError(f"config key {key!r} must be {kind.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build dataclass `cls` from a dict, refusing unknown keys and values of the wrong type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown config keys for {cls.__name__}: {', '.join(unknown)}; known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(v, hints.get(k), k) for k, v in data.items()})


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Defaults of `cls`, updated by the YAML file at `path`, then by `overrides` (e.g. from the command line)."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must hold a mapping of config keys")
        data.update(loaded)
    data.update(overrides or {})
    return from_dict(cls, data)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings (values parsed as YAML scalars) -> dict."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out
