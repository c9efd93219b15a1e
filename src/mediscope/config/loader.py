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
from mediscope.registry import did_you_mean, unknown_name_hint

KeyPath = tuple[str | int, ...]


class ConfigSource:
    """Where a config came from: the file, its key → line map, and the overrides."""

    def __init__(self, path: Path | None, lines: dict[KeyPath, int], overrides: Sequence[str]):
        self.path = path
        self.lines = lines
        self.overrides = list(overrides)
        self.overridden: set[KeyPath] = set()

    def where(self, keys: KeyPath) -> str:
        """``file:line`` of ``keys`` (or of its nearest parent), or ``--set``."""
        for n in range(len(keys), 0, -1):
            if keys[:n] in self.overridden:
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
    if not path.is_file():
        hint = "check the path" if not path.exists() else "give a YAML file, not a folder"
        raise ConfigError("config file not found", where=path, hint=hint)
    try:
        return path.read_text(encoding="utf-8")
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
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where, problem, hint = yaml_error_parts(exc, name)
        raise ConfigError(f"invalid YAML: {problem}", where=where, hint=hint) from None
    except RecursionError:
        raise ConfigError(
            "invalid YAML: nested too deeply", where=name, hint="check brackets and indentation"
        ) from None
    if raw is None:
        raise ConfigError("the config is empty", where=name, hint="start with 'task: ...'")
    if not isinstance(raw, dict):
        raise ConfigError(
            "the config must be a mapping of sections", where=name, hint="start with 'task: ...'"
        )
    lines: dict[KeyPath, int] = {}
    _collect_lines(node, (), lines)
    return raw, lines


def yaml_error_parts(exc: yaml.YAMLError, name: str) -> tuple[str, str, str]:
    """``(where, problem, hint)`` of a YAML syntax error, each on one line: the file and
    line of the problem, what it is (with the line a bracket or quote was opened on),
    and what usually fixes it."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{name}:{mark.line + 1}" if mark is not None else name
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["?"])[0]
    problem = " ".join(str(problem).split())
    context = getattr(exc, "context", None) or ""
    start = getattr(exc, "context_mark", None)
    if context and start is not None and mark is not None and start.line != mark.line:
        problem += f" ({context.removeprefix('while ')} started on line {start.line + 1})"
    if "'\\t'" in problem:
        hint = "indent with spaces: YAML does not allow tabs"
    elif isinstance(exc, yaml.reader.ReaderError):
        hint = "save it as plain UTF-8 text, without control characters"
    elif "flow" in context or "quoted" in context:
        hint = "close the bracket, brace or quote opened there"
    else:
        hint = "check indentation and colons"
    return where, problem, hint


def _collect_lines(node: yaml.Node | None, prefix: KeyPath, out: dict[KeyPath, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            keys = (*prefix, str(key_node.value))
            out[keys] = key_node.start_mark.line + 1
            _collect_lines(value_node, keys, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*prefix, i)] = item.start_mark.line + 1
            _collect_lines(item, (*prefix, i), out)


def parse_override_value(text: str) -> Any:
    """Parses the value of ``--set key=value``: YAML scalars and lists; ``a,b`` is a list."""
    stripped = text.strip()
    if "," in stripped and not stripped.startswith(("[", "{", "'", '"')):
        return [parse_override_value(part) for part in stripped.split(",")]
    try:
        return yaml.safe_load(stripped) if stripped else ""
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
    node[keys[-1]] = parse_override_value(value)
    return keys


def _translate(errors: Sequence[Any], source: ConfigSource) -> ConfigError:
    """Turns pydantic's errors into one ConfigError (the first error, and a count)."""
    first = errors[0]
    loc = tuple(p for p in first["loc"] if not _is_union_tag(p))
    dotted = ".".join(str(p) for p in loc)
    kind = first["type"]
    if kind == "extra_forbidden":
        valid = _fields_at(loc[:-1])
        message = "unknown key"
        hint = unknown_name_hint(str(loc[-1]), valid) if valid else None
    elif kind == "missing":
        message = "required key is missing"
        parent = ".".join(map(str, loc[:-1]))
        hint = f"add '{loc[-1]}' under '{parent}'" if parent else f"add a '{loc[-1]}' section"
    else:
        value = first.get("input")
        message = f"{_clean(first['msg'])} (got {value!r})"
        hint = _literal_hint(first, value)
    if len(errors) > 1:
        more = len(errors) - 1
        message += f" [and {more} more problem{'s' if more > 1 else ''}]"
    return ConfigError(message, where=f"{source.where(loc)}: {dotted}", hint=hint)


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
