"""Validate a mapping document before any event meets it; every error starts with its location.

Marshmallow checks the shape; JSONPath compilation checks each path. Errors are gathered and
reported together, e.g. `/mappings/0/fields/customer_id/path: Parse error at 1:2 near token ...`.
"""
from __future__ import annotations

from marshmallow import INCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from destination.errors import ConfigError
from destination.mapping.paths import Placeholder, split_template

# A trigger path that tests the label of the write key or webhook secret the event came with.
SOURCE_PATH = "$source"

OUTPUT_FIELDS = ("transaction_id", "customer_id", "event_type", "timestamp")
OPERATORS = ("equals", "in", "exists", "not_exists", "starts_with", "contains")


class PathOrPaths(fields.Field):
    """A JSONPath string, or a non-empty list of them tried in order."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(p, str) for p in value):
            return value
        raise ValidationError("must be a JSONPath string or a non-empty list of JSONPath strings")


class AnyValue(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        return value


ORIGINS = ("path", "literal", "template", "hash")
TRANSFORM_NAMES = ("string", "lower", "upper", "trim", "rfc3339", "epoch_s", "epoch_ms", "decimal", "hash")


class Transform(fields.Field):
    """A transform's name, or `{"truncate": N}` for one that takes an argument."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value in TRANSFORM_NAMES:
            return value
        if isinstance(value, dict) and list(value) == ["truncate"]:
            limit = value["truncate"]
            if type(limit) is int and 1 <= limit <= 1_000_000:
                return value
            raise ValidationError("'truncate' takes a whole number of bytes from 1 to 1000000")
        raise ValidationError(f"Must be one of: {', '.join(TRANSFORM_NAMES)}, or {{\"truncate\": N}}.")


class PathList(fields.Field):
    """A non-empty list of JSONPath strings (the paths a hash reads)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list) and value and all(isinstance(p, str) for p in value):
            return value
        raise ValidationError("must be a non-empty list of JSONPath strings")


class SourceSchema(Schema):
    """Exactly one origin (path, literal, template, hash), plus an optional default and transforms."""

    class Meta:
        unknown = RAISE

    path = PathOrPaths()
    literal = AnyValue(allow_none=False)
    template = fields.String(validate=validate.Length(min=1))
    hash = PathList()
    default = AnyValue()
    transforms = fields.List(Transform())

    @validates_schema
    def _one_origin(self, data, **kwargs):
        if sum(origin in data for origin in ORIGINS) != 1:
            raise ValidationError("give exactly one of 'path', 'literal', 'template' or 'hash'", "_schema")


class FieldsSchema(Schema):
    class Meta:
        unknown = RAISE

    transaction_id = fields.Nested(SourceSchema, required=True)
    customer_id = fields.Nested(SourceSchema, required=True)
    event_type = fields.Nested(SourceSchema, required=True)
    timestamp = fields.Nested(SourceSchema, required=True)


class PropertiesSchema(Schema):
    """Start from an object, flatten, include or exclude, rename, add: in that order."""

    class Meta:
        unknown = RAISE

    from_ = fields.String(data_key="from")
    flatten = fields.String(validate=validate.Length(min=1, max=8))
    include = fields.List(fields.String(), validate=validate.Length(min=1))
    exclude = fields.List(fields.String(), validate=validate.Length(min=1))
    rename = fields.Method(deserialize="_rename")
    add = fields.Method(deserialize="_add")

    def _rename(self, value):
        if not isinstance(value, dict):
            raise ValidationError("must be an object of old name -> new name")
        bad = {old: ["the new name must be non-empty text"] for old, new in value.items() if not isinstance(new, str) or not new}
        if bad:
            raise ValidationError(bad)
        return value

    def _add(self, value):
        """Each added property is a source; errors are keyed by the property's name."""
        if not isinstance(value, dict):
            raise ValidationError("must be an object of property name -> source")
        errors = {}
        for name, spec in value.items():
            if not name:
                errors[name] = ["a property name must be non-empty"]
                continue
            try:
                SourceSchema().load(spec)
            except ValidationError as exc:
                errors[name] = exc.normalized_messages()
        if errors:
            raise ValidationError(errors)
        return value

    @validates_schema
    def _include_or_exclude(self, data, **kwargs):
        if "include" in data and "exclude" in data:
            raise ValidationError("give 'include' or 'exclude', not both", "_schema")


class TriggerField(fields.Field):
    """A condition `{"path", <operator>: operand}` or `{"all"|"any": [trigger, ...]}`."""

    def _deserialize(self, value, attr, data, **kwargs):
        errors = _trigger_errors(value, "")
        if errors:
            raise ValidationError(errors)
        return value


def _trigger_errors(spec, where: str) -> dict:
    if not isinstance(spec, dict):
        return {where or "_schema": ["must be an object"]}
    groups = [mode for mode in ("all", "any") if mode in spec]
    if groups:
        parts = spec[groups[0]]
        if len(spec) != 1 or not isinstance(parts, list) or not parts:
            return {where or "_schema": [f"'{groups[0]}' must be the only key and hold a non-empty list"]}
        errors = {}
        for i, part in enumerate(parts):
            errors.update(_trigger_errors(part, f"{where}/{groups[0]}/{i}".lstrip("/")))
        return errors
    operators = [op for op in OPERATORS if op in spec]
    extra = set(spec) - {"path", *OPERATORS}
    if "path" not in spec or len(operators) != 1 or extra:
        return {where or "_schema": [f"a condition needs 'path' and exactly one of {', '.join(OPERATORS)}"]}
    if operators[0] == "in" and not isinstance(spec["in"], list):
        return {f"{where}/in".lstrip("/"): ["must be a list"]}
    if operators[0] in ("starts_with", "contains") and not isinstance(spec[operators[0]], str):
        return {f"{where}/{operators[0]}".lstrip("/"): ["must be a string"]}
    return {}


class MappingSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    enabled = fields.Boolean(load_default=True)
    trigger = TriggerField(required=True)
    fields_ = fields.Nested(FieldsSchema, data_key="fields", required=True)
    properties = fields.Nested(PropertiesSchema)


class DocumentSchema(Schema):
    class Meta:
        unknown = INCLUDE  # room for a top-level "description" or "$schema"

    mappings = fields.List(fields.Nested(MappingSchema), required=True, validate=validate.Length(min=1))


def validate_document(document, compile_path) -> None:
    """Raise ConfigError with one `location: message` line per problem, or return None."""
    if not isinstance(document, dict):
        raise ConfigError("/: a mapping file must be a JSON object with a 'mappings' list")
    try:
        DocumentSchema().load(document)
        problems = []
    except ValidationError as exc:
        problems = list(_flatten(exc.normalized_messages(), ""))
    # Paths and templates are compiled even when the shape has errors, so an admin sees every
    # problem at once rather than one layer per save; the walk skips what has the wrong shape.
    problems += [f"{where}: {message}" for where, message in _path_problems(document, compile_path)]
    mappings = document.get("mappings") if isinstance(document.get("mappings"), list) else []
    names = [m.get("name") if isinstance(m, dict) else None for m in mappings]
    for i, name in enumerate(names):
        if name is not None and name in names[:i]:
            problems.append(f"/mappings/{i}/name: duplicate mapping name {name!r}")
    if problems:
        raise ConfigError("\n".join(sorted(problems, key=_location_order)))


def _location_order(line: str) -> list:
    """Problems in document order: /mappings/2 before /mappings/10."""
    where = line.split(": ", 1)[0]
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in where.split("/")]


def _items(value) -> list:
    return list(value.items()) if isinstance(value, dict) else []


def _path_problems(document, compile_path):
    """Compile every JSONPath and template in the document, yielding (location, error) for each bad one."""
    mappings = document.get("mappings")
    for i, mapping in enumerate(mappings if isinstance(mappings, list) else []):
        if not isinstance(mapping, dict):
            continue
        base = f"/mappings/{i}"
        for name, source in _items(mapping.get("fields")):
            yield from _source_problems(compile_path, source, f"{base}/fields/{name}")
        properties = mapping.get("properties") if isinstance(mapping.get("properties"), dict) else {}
        if isinstance(properties.get("from"), str):
            yield from _compile_problem(compile_path, properties["from"], f"{base}/properties/from")
        for name, source in _items(properties.get("add")):
            yield from _source_problems(compile_path, source, f"{base}/properties/add/{name}")
        if isinstance(mapping.get("trigger"), dict):
            yield from _trigger_path_problems(compile_path, mapping["trigger"], f"{base}/trigger")


def _source_problems(compile_path, source, where: str):
    if not isinstance(source, dict):
        return
    for origin in ("path", "hash"):
        paths = source.get(origin, [])
        for j, path in enumerate([paths] if isinstance(paths, str) else paths if isinstance(paths, list) else []):
            if isinstance(path, str):
                yield from _compile_problem(compile_path, path, f"{where}/{origin}" + ("" if isinstance(paths, str) else f"/{j}"))
    if isinstance(source.get("template"), str):
        try:
            parts = split_template(source["template"])
        except ValueError as exc:
            yield f"{where}/template", str(exc)
            return
        for path in (p for p in parts if isinstance(p, Placeholder)):
            for location, message in _compile_problem(compile_path, path, f"{where}/template"):
                yield location, f"placeholder {{{{{path}}}}}: {message}"


def _trigger_path_problems(compile_path, spec, where):
    if not isinstance(spec, dict):
        return
    for mode in ("all", "any"):
        if mode in spec:
            for i, part in enumerate(spec[mode] if isinstance(spec[mode], list) else []):
                yield from _trigger_path_problems(compile_path, part, f"{where}/{mode}/{i}")
            return
    if isinstance(spec.get("path"), str) and spec["path"] != SOURCE_PATH:
        yield from _compile_problem(compile_path, spec["path"], f"{where}/path")


def _compile_problem(compile_path, path, where):
    try:
        compile_path(path)
    except ValueError as exc:
        yield where, str(exc)


def _flatten(messages, prefix: str):
    """Turn marshmallow's nested error dict into `/a/0/b: message` lines."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            key = {"fields_": "fields", "from_": "from"}.get(str(key), str(key))
            where = prefix if key == "_schema" else f"{prefix}/{key}"
            yield from _flatten(value, where)
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        for message in messages:
            yield f"{prefix or '/'}: {message}"
    else:
        for i, value in enumerate(messages):
            yield from _flatten(value, f"{prefix}/{i}")
