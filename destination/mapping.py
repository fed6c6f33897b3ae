"""Compile admin mappings once, then turn each CDP event into usage-event fields.

A mapping file is `{"mappings": [...]}`; each mapping has a trigger (which events it subscribes
to), one source per Metronome field, and where the properties come from. `load_mapping_set`
validates and compiles; `map_event` applies the compiled set to one event and is pure.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from jsonpath_ng.ext import parse as parse_jsonpath
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError

from . import exact
from .errors import ConfigError, EventRefused
from .mapping_schema import SOURCE_PATH, validate_document

Getter = Callable[[object], list]
# `$.a.b_c` is answered by plain dict lookups: the same result as jsonpath-ng (checked by a
# property test) at a twentieth of the cost.
_DOTTED = re.compile(r"\$((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
SCALAR_FIELDS = ("transaction_id", "customer_id", "event_type", "timestamp")


def compile_path(path: str) -> Getter:
    """Return a function giving every value the JSONPath matches; raise ValueError if invalid."""
    try:
        expression = parse_jsonpath(path)
    except (JsonPathParserError, JsonPathLexerError, Exception) as exc:  # jsonpath-ng raises bare Exceptions too
        raise ValueError(str(exc).strip() or "invalid JSONPath") from None
    dotted = _DOTTED.fullmatch(path)
    if dotted is None:
        return lambda document: [match.value for match in expression.find(document)]
    keys = tuple(dotted.group(1)[1:].split("."))
    return lambda document: _lookup(document, keys)


def _lookup(document, keys) -> list:
    for key in keys:
        if not isinstance(document, dict) or key not in document:
            return []
        document = document[key]
    return [document]


def _is_empty(value) -> bool:
    return value is None or value == ""


@dataclass(frozen=True, slots=True)
class Source:
    """Where one field's value comes from: the first path with a non-empty value, else default."""

    getters: tuple[Getter, ...]
    literal: object = None
    default: object = None
    scalar: bool = True

    def resolve(self, field: str, event: dict):
        for getter in self.getters:
            values = getter(event)
            if len(values) > 1 and self.scalar:
                raise EventRefused("ambiguous_field", f"{field}: the path matched {len(values)} values; it must match one")
            if values and not _is_empty(values[0]):
                return values[0]
        return self.literal if self.literal is not None else self.default


@dataclass(frozen=True, slots=True)
class Condition:
    getter: Getter | None  # None: the condition tests the receiving source's label (`$source`)
    operator: str
    operand: object

    def test(self, event: dict, source: str | None = None) -> bool:
        values = self.getter(event) if self.getter else [source]
        if self.operator == "exists":
            return bool(values) and values[0] is not None
        if self.operator == "not_exists":
            return not values or values[0] is None
        if not values:
            return False
        value = values[0]
        if self.operator == "equals":
            return value == self.operand
        if self.operator == "in":
            return value in self.operand
        if not isinstance(value, str):
            return False
        if self.operator == "starts_with":
            return value.startswith(self.operand)
        return self.operand in value  # contains


@dataclass(frozen=True, slots=True)
class Trigger:
    mode: str  # "all" | "any"
    parts: tuple  # of Condition | Trigger

    def test(self, event: dict, source: str | None = None) -> bool:
        if self.mode == "all":
            return all(part.test(event, source) for part in self.parts)
        return any(part.test(event, source) for part in self.parts)


@dataclass(frozen=True, slots=True)
class Mapping:
    name: str
    trigger: Trigger
    fields: dict  # field name -> Source
    properties: Source | None


@dataclass(frozen=True, slots=True)
class MappingSet:
    version: str
    mappings: tuple[Mapping, ...]


def map_event(mapping_set: MappingSet, event: dict, source: str | None = None) -> list[tuple[Mapping, dict | EventRefused]]:
    """Apply every enabled mapping whose trigger matches; empty means the event is filtered.

    `source` is the label of the write key or webhook secret the event came with."""
    results = []
    for mapping in mapping_set.mappings:
        if not mapping.trigger.test(event, source):
            continue
        try:
            values = {name: source.resolve(name, event) for name, source in mapping.fields.items()}
            if mapping.properties is not None:
                values["properties"] = mapping.properties.resolve("properties", event)
            results.append((mapping, values))
        except EventRefused as refusal:
            results.append((mapping, refusal))
    return results


def compile_mapping_set(document: dict, version: str) -> MappingSet:
    """Validate a mapping document and compile it; raise ConfigError listing every problem."""
    validate_document(document, compile_path)
    mappings = tuple(_compile_mapping(m) for m in document["mappings"] if m.get("enabled", True))
    return MappingSet(version=version, mappings=mappings)


def load_mapping_set(path: str | Path) -> MappingSet:
    """Read, validate and compile a mapping file; its version is a hash of its bytes."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"MAPPINGS_PATH: cannot read {path}: {exc.strerror}") from None
    try:
        document = exact.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    try:
        return compile_mapping_set(document, f"{path.name}@{hashlib.sha256(raw).hexdigest()[:12]}")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _compile_source(spec: dict, scalar: bool) -> Source:
    paths = spec.get("path", [])
    paths = [paths] if isinstance(paths, str) else paths
    return Source(
        getters=tuple(compile_path(p) for p in paths),
        literal=spec.get("literal"),
        default=spec.get("default"),
        scalar=scalar,
    )


def _compile_trigger(spec: dict) -> Trigger | Condition:
    for mode in ("all", "any"):
        if mode in spec:
            return Trigger(mode, tuple(_compile_trigger(part) for part in spec[mode]))
    operator = next(op for op in ("equals", "in", "exists", "not_exists", "starts_with", "contains") if op in spec)
    getter = None if spec["path"] == SOURCE_PATH else compile_path(spec["path"])
    return Condition(getter, operator, spec[operator])


def _compile_mapping(spec: dict) -> Mapping:
    trigger = _compile_trigger(spec["trigger"])
    if isinstance(trigger, Condition):
        trigger = Trigger("all", (trigger,))
    properties = spec.get("properties")
    return Mapping(
        name=spec["name"],
        trigger=trigger,
        fields={name: _compile_source(source, True) for name, source in spec["fields"].items()},
        properties=_compile_source({"path": properties["from"]}, False) if properties else None,
    )
