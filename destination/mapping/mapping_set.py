"""Compile admin mappings once, then turn each CDP event into usage-event fields.

A mapping file is `{"mappings": [...]}`; each mapping has a trigger (which events it subscribes
to), one source per Metronome field, and where the properties come from. `load_mapping_set`
validates and compiles; `map_event` applies the compiled set to one event and is pure.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from destination.errors import ConfigError, EventRefused
from destination.mapping.paths import Getter, compile_path
from destination.mapping.schema import OPERATORS, SOURCE_PATH, validate_document
from destination.mapping.sources import Properties, Source, compile_properties, compile_source
from destination.payload import exact

__all__ = ["MappingSet", "compile_mapping_set", "compile_path", "load_mapping_set", "map_event"]


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
        wanted = self.mode == "any"  # the answer that decides early: one true for any, one false for all
        for part in self.parts:
            if part.test(event, source) is wanted:
                return wanted
        return not wanted


@dataclass(frozen=True, slots=True)
class Mapping:
    name: str
    trigger: Trigger
    fields: dict[str, Source]
    properties: Properties | None


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
                values["properties"] = mapping.properties.resolve(event)
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


def _compile_trigger(spec: dict) -> Trigger | Condition:
    for mode in ("all", "any"):
        if mode in spec:
            return Trigger(mode, tuple(_compile_trigger(part) for part in spec[mode]))
    operator = next(op for op in OPERATORS if op in spec)
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
        fields={name: compile_source(source) for name, source in spec["fields"].items()},
        properties=compile_properties(properties) if properties is not None else None,
    )
