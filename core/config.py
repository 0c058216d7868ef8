"""The one config system: YAML files under configs/ loaded into dataclass schemas, with unknown keys refused."""
from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
# What a command line reports as one line with exit code 2: a bad config (ValueError, YAML), file (OSError) or
# checkpoint (CheckpointError is a ValueError); commands that load model sets add core.hub.HubError.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, yaml.YAMLError)


def short(value: Any, limit: int = 80) -> str:
    """repr(value) cut to about `limit` characters: what a message quotes of a value it refuses (a client that
    sends megabytes gets a short answer, and the log stays small)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 16]}... ({len(text):,} chars)"


def one_line(error: BaseException, limit: int = 600) -> str:
    """An error's message on one line, cut to `limit` characters: what a command prints for a user's mistake."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


class ConfigLoader(yaml.SafeLoader):
    """YAML as configs mean it: only true/false are booleans (YAML 1.2), so `mixed_precision: no` or
    `--set mixed_precision=no` stays the word "no" instead of YAML 1.1's False."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))


def read_yaml(text: str) -> Any:
    """Parse config YAML (see `ConfigLoader`)."""
    return yaml.load(text, Loader=ConfigLoader)


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


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                known_only: bool = False) -> T:
    """Defaults of `cls`, updated by the YAML file at `path`, then by `overrides` (e.g. from the command line).
    With `known_only` the file's keys that `cls` does not know are skipped (a report that reads its part of a
    training recipe); otherwise they are refused."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = read_yaml(Path(path).read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must hold a mapping of config keys")
        data.update(loaded)
    data.update(overrides or {})
    if known_only:
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
    return from_dict(cls, data)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings (values parsed as YAML scalars) -> dict."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = read_yaml(value)
    return out
