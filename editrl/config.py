"""Structured configs: OmegaConf dataclass schemas, YAML presets that override one base, validated once.

A preset YAML may name its parent with a top-level ``base: other.yaml`` (relative to the preset), so presets
stay small overrides. Every config dataclass may define ``validate(self)`` that raises :class:`ConfigError`
naming the offending key; :func:`load_config` calls them all, depth first, before anything starts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type, or holds an invalid value."""


def _read_yaml_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config 'base' chain loops back to {path}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        node = OmegaConf.load(path)
    except Exception as exc:  # yaml parse errors come in many classes
        raise ConfigError(f"cannot parse config file {path}: {exc}") from exc
    if not OmegaConf.is_dict(node):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    base = node.pop("base", None)
    chain: list[Any] = []
    if base is not None:
        chain = _read_yaml_chain(path.parent / str(base), (*seen, path))
    return [*chain, node]


def _chain_paths(path: Path, seen: tuple[Path, ...] = ()) -> list[Path]:
    """The files of a preset's ``base:`` chain, root first (parallel to :func:`_read_yaml_chain`)."""
    path = path.resolve()
    base = OmegaConf.load(path).get("base")
    return [*(_chain_paths(path.parent / str(base), (*seen, path)) if base is not None else []), path]


def _named_error(exc: OmegaConfBaseException, source: str) -> ConfigError:
    """An OmegaConf error as a ConfigError naming the key and, when known, the file or override it came from."""
    key = getattr(exc, "full_key", None)
    msg = str(exc).splitlines()[0]
    where = f" ({source})" if source else ""
    return ConfigError(f"config key {key!r}{where}: {msg}" if key else f"config error{where}: {msg}")


def validate_tree(obj: Any, prefix: str = "") -> None:
    """Validate ``obj`` depth first, lists and dicts included; prefix errors with the dotted key path.

    Every float must be finite (a NaN learning rate or loss weight is never a deliberate setting), and every
    dataclass's ``validate()`` runs after its children's.
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ConfigError(f"{prefix.rstrip('.')}: must be a finite number, got {obj}")
    if isinstance(obj, list | tuple):
        for i, item in enumerate(obj):
            validate_tree(item, f"{prefix}{i}.")
        return
    if isinstance(obj, dict):
        for name, item in obj.items():
            validate_tree(item, f"{prefix}{name}.")
        return
    if not dataclasses.is_dataclass(obj):
        return
    for field in dataclasses.fields(obj):
        validate_tree(getattr(obj, field.name), f"{prefix}{field.name}.")
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except ConfigError as exc:
            raise ConfigError(f"{prefix}{exc}" if prefix else str(exc)) from None


def load_config(schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build ``schema`` from defaults, then the YAML chain at ``path``, then ``key=value`` overrides.

    Unknown keys, wrong types and failed ``validate()`` checks raise :class:`ConfigError` naming the key.
    """
    try:
        cfg = OmegaConf.structured(schema)
        layers = _read_yaml_chain(Path(path)) if path is not None else []
        for bad in [o for o in overrides if "=" not in o]:
            raise ConfigError(f"override {bad!r} is not of the form key=value")
        sources = [f"in {p}" for p in _chain_paths(Path(path))] if path is not None else []
        for override in overrides:
            layers.append(OmegaConf.from_dotlist([override]))
            sources.append(f"in override {override}")
        for layer, source in zip(layers, sources, strict=True):
            try:
                cfg = OmegaConf.merge(cfg, layer)
            except OmegaConfBaseException as exc:
                raise _named_error(exc, source) from None
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise _named_error(exc, "") from None
    validate_tree(obj)
    return obj  # type: ignore[return-value]


def to_yaml(cfg: Any) -> str:
    """The config as YAML text (for checkpoints and logs)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
