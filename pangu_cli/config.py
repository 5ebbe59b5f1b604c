"""Typed stage configs: one dataclass per stage, filled from a YAML/TOML file,
command-line flags and dotted overrides (`optim.lr=3e-4`), in that order."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pangu_cli.errors import UserError

T = TypeVar("T")

SHIPPED_CONFIGS = Path(__file__).parent / "configs"


def resolve_config_path(name: str | Path) -> Path:
    """A config file path, or the name of a shipped config (`tiny`, `demo`, ...)."""
    path = Path(name)
    if path.exists():
        return path
    shipped = SHIPPED_CONFIGS / f"{name}.yaml"
    if shipped.exists():
        return shipped
    known = ", ".join(sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml")))
    raise UserError(f"{name}: no such config file (shipped configs: {known})")


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = resolve_config_path(path)
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        kind = "TOML" if path.suffix == ".toml" else "YAML"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not valid {kind}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping of sections")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise UserError(f"override '{item}': expected KEY=VALUE, for example optim.lr=3e-4")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def set_dotted(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise UserError(f"override '{'.'.join(keys)}': '{k}' is not a section")
    node[keys[-1]] = value


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    section: str | None = None,
) -> T:
    """Build a `cls` config: file, then flags given on the command line, then overrides.

    With `section`, only that top-level section of the file is used (one file can hold
    every stage's settings: `tokenizer_build:`, `tokenize:`, ...); flags and overrides
    are then relative to it.
    """
    data: dict[str, Any] = read_config_file(path) if path else {}
    if section is not None:
        data = data.get(section) or {}
        if not isinstance(data, dict):
            raise UserError(f"{path}: section '{section}' must be a mapping")
    for key, value in (flags or {}).items():
        if value is not None:
            set_dotted(data, key.split("."), value)
    for item in overrides or []:
        keys, value = parse_override(item)
        set_dotted(data, keys, value)
    return from_dict(cls, data, where="")


def from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:
    if not isinstance(data, dict):
        raise UserError(f"config {where or 'root'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        raise UserError(f"config: unknown key '{name}' (known: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(hints[name], value, key)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, key)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, key)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list | tuple):
            value = [value]
        items = [_coerce(inner, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict or tp is Any:
        return value
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise UserError(f"config {key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is float and isinstance(value, int | float | str):
            return float(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise UserError(f"config {key}: {value!r} is not a valid {tp.__name__}") from None
    return value


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
