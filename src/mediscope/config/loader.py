"""Loading a config: YAML → overrides → pydantic, with errors that name the place.

Every error names the file (and line, where the YAML has one), the key path, the bad
value and the valid choices, e.g.::

    error: cfg.yaml:7: model.nme: unknown key; did you mean 'name'? valid: name, pretrained, ...
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mediscope.config.schema import Config, DatasetConfig
from mediscope.errors import ConfigError, MediscopeError
from mediscope.files import read_text_file
from mediscope.registry import did_you_mean, unknown_name_hint
from mediscope.yamlsafe import MAX_BYTES, YamlLimitError, parse_yaml, yaml_problem

KeyPath = tuple[str | int, ...]


class ConfigSource:
    """Where a config came from: the file, its key → line map, and the overrides."""

    def __init__(self, path: Path | None, lines: dict[KeyPath, int], overrides: Sequence[str]):
        self.path = path
        self.lines = lines
        self.overrides = list(overrides)
        self.overridden: set[KeyPath] = set()

    def where(self, keys: KeyPath) -> str:
        """``file:line`` of ``keys`` (or of its nearest parent), or ``--set`` when an
        override set ``keys``, a section above it or a key inside it (an error about a
        section, such as ``data.split``, comes of any of its keys)."""
        for n in range(len(keys), 0, -1):
            if keys[:n] in self.overridden:
                return "--set"
        if keys and any(k[: len(keys)] == keys for k in self.overridden):
            return "--set"
        name = str(self.path) if self.path else "<config>"
        for n in range(len(keys), 0, -1):
            if keys[:n] in self.lines:
                return f"{name}:{self.lines[keys[:n]]}"
        return name


def read_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Reads a YAML config, applies overrides and checks it against the schema.

    This is the config layer alone: names of models, losses, tasks, ... and the
    task's defaults are checked and filled by :func:`mediscope.tasks.validate.validate`
    (:func:`mediscope.load_config` does both).

    Args:
        path: The YAML file.
        overrides: ``key.path=value`` strings; values are parsed as YAML (numbers,
            booleans, ``[lists]``); a bare ``a,b`` becomes a list.

    Returns:
        The config as the schema reads it.

    Raises:
        ConfigError: naming the file, line, key, bad value and valid choices.
    """
    path = Path(path)
    return parse_config_text(_read_text(path), path=path, overrides=overrides)


def read_dataset_config(path: str | Path, overrides: Iterable[str] = ()) -> DatasetConfig:
    """Like :func:`read_config` for a config that may lack its ``model`` section (what
    the dataset doctor reads; see :func:`parse_dataset_dict`)."""
    path = Path(path)
    raw, source = _raw_and_source(_read_text(path), path, overrides)
    return parse_dataset_dict(raw, source)


def _read_text(path: Path) -> str:
    if not path.exists():
        raise ConfigError("config file not found", where=path, hint="check the path")
    if path.is_dir():
        raise ConfigError(
            "config file not found", where=path, hint="give a YAML file, not a folder"
        )
    try:
        return read_text_file(
            path, limit=MAX_BYTES, what="config", encoding="utf-8", error=ConfigError
        )
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config: {exc}", where=path) from None


def _raw_and_source(
    text: str, path: Path | None, overrides: Iterable[str]
) -> tuple[dict[str, Any], ConfigSource]:
    """The YAML as a dict with the overrides applied, and where each key came from."""
    raw, lines = _parse_yaml(text, path)
    source = ConfigSource(path, lines, list(overrides))
    for item in source.overrides:
        keys = apply_override(raw, item)
        source.overridden.add(keys)
    return raw, source


def parse_config_text(
    text: str, *, path: Path | None = None, overrides: Iterable[str] = ()
) -> Config:
    """Like :func:`read_config`, from YAML text."""
    raw, source = _raw_and_source(text, path, overrides)
    return parse_config_dict(raw, source)


def parse_config_dict(raw: dict[str, Any], source: ConfigSource | None = None) -> Config:
    """Checks a plain dict against the schema (names and defaults: ``validate``)."""
    source = source or ConfigSource(None, {}, [])
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise _translate(exc.errors(), source) from None
    config._source = source
    return config


def parse_dataset_dict(raw: dict[str, Any], source: ConfigSource | None = None) -> DatasetConfig:
    """Like :func:`parse_config_dict` for a config that may lack its ``model`` section.

    Every section present is checked as in a whole config; with a model the result is a
    whole :class:`~mediscope.config.schema.Config`, without one its
    :class:`~mediscope.config.schema.DatasetConfig` part (task, seed, data).
    """
    source = source or ConfigSource(None, {}, [])
    if "model" in raw:
        return parse_config_dict(raw, source)
    try:
        Config.model_validate(raw)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if tuple(e["loc"]) != ("model",)]
        if errors:
            raise _translate(errors, source) from None
    keys = DatasetConfig.model_fields
    try:
        config = DatasetConfig.model_validate({k: v for k, v in raw.items() if k in keys})
    except ValidationError as exc:
        raise _translate(exc.errors(), source) from None
    config._source = source
    return config


def _parse_yaml(text: str, path: Path | None) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    name = str(path) if path else "<config>"
    try:
        raw, node = parse_yaml(text)
    except yaml.YAMLError as exc:
        where, message, hint = yaml_problem(exc, name)
        raise ConfigError(message, where=where, hint=hint) from None
    if raw is None:
        raise ConfigError("the config is empty", where=name, hint="start with 'task: ...'")
    if not isinstance(raw, dict):
        raise ConfigError(
            "the config must be a mapping of sections", where=name, hint="start with 'task: ...'"
        )
    lines: dict[KeyPath, int] = {}
    _collect_lines(node, (), lines)
    return raw, lines


def _collect_lines(node: yaml.Node | None, prefix: KeyPath, out: dict[KeyPath, int]) -> None:
    # Each node once: an alias names a node already walked (its lines are the anchor's).
    seen: set[int] = set()
    stack = [(node, prefix)]
    while stack:
        item, keys = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, yaml.MappingNode):
            for key_node, value_node in item.value:
                child = (*keys, str(key_node.value))
                out.setdefault(child, key_node.start_mark.line + 1)
                stack.append((value_node, child))
        elif isinstance(item, yaml.SequenceNode):
            for i, value_node in enumerate(item.value):
                out.setdefault((*keys, i), value_node.start_mark.line + 1)
                stack.append((value_node, (*keys, i)))


def parse_override_value(text: str, *, where: str = "--set") -> Any:
    """Parses the value of ``--set key=value``: YAML scalars and lists; ``a,b`` is a list.

    Text that is not valid YAML stays a string; a value over the YAML limits (an alias
    bomb, deep nesting) or with a repeated key is an error.

    Raises:
        ConfigError: naming ``where`` (``--set: model.params``).
    """
    stripped = text.strip()
    if "," in stripped and not stripped.startswith(("[", "{", "'", '"')):
        return [parse_override_value(part, where=where) for part in stripped.split(",")]
    try:
        return parse_yaml(stripped)[0] if stripped else ""
    except YamlLimitError as exc:
        raise ConfigError(str(exc.problem), where=where, hint=exc.hint) from None
    except yaml.YAMLError:
        return stripped


def apply_override(raw: dict[str, Any], item: str) -> KeyPath:
    """Applies one ``a.b.c=value`` to ``raw`` in place; returns the key path."""
    if "=" not in item:
        raise ConfigError(
            f"override '{item}' has no '='", where="--set", hint="write --set key.path=value"
        )
    key, value = item.split("=", 1)
    keys = tuple(k.strip() for k in key.strip().split("."))
    if not all(keys):
        raise ConfigError(f"empty key in override '{item}'", where="--set")
    node = raw
    for depth, k in enumerate(keys[:-1]):
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            dotted = ".".join(keys[: depth + 1])
            raise ConfigError(
                f"cannot set '{key}': '{dotted}' is a value, not a section", where="--set"
            )
        node = child
    node[keys[-1]] = parse_override_value(value, where=f"--set: {'.'.join(keys)}")
    return keys


def _translate(errors: Sequence[Any], source: ConfigSource) -> ConfigError:
    """Turns pydantic's errors into one ConfigError on one line: every problem, unknown
    keys first (a misspelt key is usually why a required one is missing), each with its
    place and fix."""
    order = {"extra_forbidden": 0, "missing": 2}
    ranked = sorted(errors, key=lambda e: order.get(e["type"], 1))  # stable: file order
    problems = [_problem(error, source) for error in ranked]
    where, message, hint = problems[0]
    rest = [f"{w}: {m}" + (f" ({h})" if h else "") for w, m, h in problems[1:]]
    if rest:
        hint = "; ".join([hint, *rest] if hint else rest)
    return ConfigError(message, where=where, hint=hint)


def _problem(error: Any, source: ConfigSource) -> tuple[str, str, str | None]:
    """``(where, message, hint)`` of one pydantic error."""
    loc = tuple(p for p in error["loc"] if not _is_union_tag(p))
    dotted = ".".join(str(p) for p in loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _fields_at(loc[:-1])
        message = "unknown key"
        hint = unknown_name_hint(str(loc[-1]), valid) if valid else None
    elif kind == "missing":
        message = "required key is missing"
        parent = ".".join(map(str, loc[:-1]))
        hint = f"add '{loc[-1]}' under '{parent}'" if parent else f"add a '{loc[-1]}' section"
    else:
        value = error.get("input")
        message = f"{_clean(error['msg'])} (got {value!r})"
        hint = _literal_hint(error, value)
    return f"{source.where(loc)}: {dotted}", message, hint


def _is_union_tag(part: str | int) -> bool:
    # pydantic puts the tried union member ('int', 'literal[...]', 'function-after[...]')
    # into the location; users only know key names.
    return isinstance(part, str) and (
        "[" in part or part in {"int", "float", "str", "bool", "list", "dict", "tuple"}
    )


def _clean(msg: str) -> str:
    msg = msg.removeprefix("Value error, ")  # pydantic's prefix for validator messages
    return msg[0].lower() + msg[1:] if msg else msg


def _literal_hint(error: Any, value: Any) -> str | None:
    expected = (error.get("ctx") or {}).get("expected")
    if not expected or not isinstance(value, str):
        return None
    choices = [c.strip().strip("'") for c in expected.replace(" or ", ", ").split(",")]
    guess = did_you_mean(value, choices)
    return f"did you mean '{guess}'?" if guess else None


def _fields_at(loc: KeyPath) -> list[str]:
    """The valid keys of the section at ``loc`` (walking the schema)."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    return list(model.model_fields) if _is_model(model) else []


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if _is_model(annotation):
        return typing.cast(type[BaseModel], annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


_KEY_PATH = re.compile(r"[A-Za-z_]\w*(\.\w+)*")


def locate(error: MediscopeError, config: DatasetConfig) -> MediscopeError:
    """``error`` with a bare key path as its place (``model.params.foo``) given the file
    and line of that key (``cfg.yaml:12: model.params.foo``, or ``--set: ...``).

    Builders raise errors that name the key only: they never see the config file.
    Errors naming anything else (a file, a folder) are returned unchanged.
    """
    source = config._source
    where = error.where
    if source is None or where is None or not _KEY_PATH.fullmatch(where):
        return error
    keys = tuple(where.split("."))
    if keys[0] not in Config.model_fields:
        return error
    return type(error)(error.message, where=f"{source.where(keys)}: {where}", hint=error.hint)


def dump_config(config: Config) -> str:
    """The resolved config as YAML text (what runs, every default written out)."""
    data = config.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
