"""Where a mapped value comes from: a field Source, and the properties a mapping sends.

The rules, exactly (the README's "Mapping language" section says the same):
- A path list is tried in order; the first path with a non-empty value wins (null and "" are
  empty). A path that matches several values, for a single value, refuses the event
  (`ambiguous_field`): picking one would be a guess about billing.
- A template needs every placeholder: if one finds nothing the template gives nothing (so the
  default applies, or a required field refuses the event) rather than a half-built id that
  could collide with another event's. A placeholder must find text, a number or a boolean.
- A hash source hashes the values at its paths (a missing path counts as null); it gives
  nothing only when every path is missing.
- Transforms run in order on a found value; the default is used as written, untransformed.
- Properties: start from the `from` object (none: empty), flatten, then include or exclude,
  then rename, then add. Each step sees the keys the previous one produced.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from destination.errors import EventRefused
from destination.mapping import transforms
from destination.mapping.paths import MISSING, Placeholder, compile_path, dotted_keys, split_template, walk
from destination.payload.exact import NumberOutOfRange, to_metronome_string

Origin = Callable[[dict, str], object]  # (event, field name) -> value, None when nothing is found


def is_empty(value) -> bool:
    return value is None or value == ""


def compile_single(path: str) -> Origin:
    """(event, field) -> the one value the path matches, None when it matches nothing; a path
    that matches several refuses the event. A dotted path can match only one value, so it is
    answered by plain lookups: about a third of a mapping's time was spent building and
    unpacking one-value lists."""
    getter = compile_path(path)  # also the check that the path is valid
    keys = dotted_keys(path)
    if keys is not None and len(keys) == 1:
        [key] = keys
        return lambda event, field: event.get(key) if isinstance(event, dict) else None
    if keys is not None:
        return lambda event, field: None if (value := walk(event, keys)) is MISSING else value

    def single(event, field):
        values = getter(event)
        if len(values) > 1:
            raise EventRefused("ambiguous_field", f"{field}: the path matched {len(values)} values; it must match one")
        return values[0] if values else None
    return single


@dataclass(frozen=True, slots=True)
class Source:
    """One value: its origin, a default, and transforms applied to a found value."""

    origin: Origin
    default: object = None
    transforms: tuple = ()  # (name, function), from transforms.compile_chain

    def resolve(self, field: str, event: dict):
        value = self.origin(event, field)
        if self.transforms and not is_empty(value):
            value = transforms.apply(self.transforms, value, field)
        return self.default if value is None or value == "" else value


def _first_of(singles: tuple[Origin, ...]) -> Origin:
    if len(singles) == 1:  # the common case, without the loop
        return singles[0]

    def origin(event, field):
        for single in singles:
            value = single(event, field)
            # Text of only spaces counts as empty here: a userId of "   " is no customer, and
            # validation would refuse it, so the next path (anonymousId) is asked instead.
            if not is_empty(value) and not (type(value) is str and value.isspace()):
                return value
        return None
    return origin


def _template(parts: list) -> Origin:
    compiled = [compile_single(p) if isinstance(p, Placeholder) else p for p in parts]

    def origin(event, field):
        out = []
        for part in compiled:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part(event, field)
            if is_empty(value):
                return None
            if isinstance(value, (dict, list)):
                raise EventRefused("template_value_not_scalar", f"{field}: a template placeholder found an object or array")
            try:
                out.append(to_metronome_string(value))
            except NumberOutOfRange as exc:
                raise EventRefused("number_out_of_range", f"{field}: {exc}") from None
        return "".join(out)
    return origin


def _hash(singles: tuple[Origin, ...]) -> Origin:
    def origin(event, field):
        values = [single(event, field) for single in singles]
        return None if all(v is None for v in values) else transforms.hash_values(values)
    return origin


def compile_source(spec: dict) -> Source:
    """A validated source spec: exactly one of path, literal, template or hash."""
    if "literal" in spec:
        literal = spec["literal"]
        origin = lambda event, field: literal  # noqa: E731
    elif "template" in spec:
        origin = _template(split_template(spec["template"]))
    elif "hash" in spec:
        origin = _hash(tuple(compile_single(p) for p in spec["hash"]))
    else:
        paths = spec["path"]
        origin = _first_of(tuple(compile_single(p) for p in ([paths] if isinstance(paths, str) else paths)))
    return Source(origin, spec.get("default"), transforms.compile_chain(spec.get("transforms", ())))


@dataclass(frozen=True, slots=True)
class Properties:
    base: Origin | None  # compile_single of the `from` path
    flatten: str | None = None
    include: frozenset | None = None
    exclude: frozenset = frozenset()
    rename: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, Source], ...] = ()
    # With flatten, `include`/`exclude` of "debug" also take what flattening made of it
    # ("debug.trace"), so naming an object keeps or drops all of it, as it does unflattened.
    include_prefixes: tuple = ()
    exclude_prefixes: tuple = ()

    def resolve(self, event: dict) -> dict:
        found = self.base(event, "properties") if self.base else None
        if found is None:
            found = {}
        if not isinstance(found, dict):
            raise EventRefused("invalid_properties", f"properties must be an object, not {type(found).__name__}")
        properties = _flatten(found, self.flatten) if self.flatten else dict(found)
        if self.include is not None:
            properties = {k: v for k, v in properties.items() if k in self.include or k.startswith(self.include_prefixes)}
        for key in self.exclude:
            properties.pop(key, None)
        if self.exclude_prefixes:
            properties = {k: v for k, v in properties.items() if not k.startswith(self.exclude_prefixes)}
        for old, new in self.rename:
            if old in properties:
                properties[new] = properties.pop(old)
        for name, source in self.add:
            value = source.resolve(f"properties.{name}", event)
            if not is_empty(value):
                properties[name] = value
        return properties


def _flatten(value: dict, separator: str, prefix: str = "", out: dict | None = None) -> dict:
    """Nested objects become `a<sep>b` keys; arrays stay whole (sent as compact JSON)."""
    out = {} if out is None else out
    for key, item in value.items():
        name = f"{prefix}{separator}{key}" if prefix else key
        if isinstance(item, dict) and item:
            _flatten(item, separator, name, out)
        elif name in out:
            raise EventRefused("property_key_collision", f"properties: flattening gives the key {name!r} twice")
        else:
            out[name] = item
    return out


def compile_properties(spec: dict) -> Properties:
    separator = spec.get("flatten")
    prefixes = lambda names: tuple(f"{name}{separator}" for name in names) if separator else ()  # noqa: E731
    return Properties(
        base=compile_single(spec["from"]) if "from" in spec else None,
        flatten=spec.get("flatten"),
        include=frozenset(spec["include"]) if "include" in spec else None,
        exclude=frozenset(spec.get("exclude", ())),
        rename=tuple(spec.get("rename", {}).items()),
        add=tuple((name, compile_source(source)) for name, source in spec.get("add", {}).items()),
        include_prefixes=prefixes(spec.get("include", ())),
        exclude_prefixes=prefixes(spec.get("exclude", ())),
    )
