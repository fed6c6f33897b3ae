"""JSONPaths and templates: the only ways a mapping reads an event.

`compile_path` turns a JSONPath into a getter returning every matched value. A template is text
with `{{<JSONPath>}}` placeholders, e.g. `"{{$.messageId}}:input"`; `split_template` cuts it into
literal text and paths, and is shared by the validator and the compiler so both read it alike.
"""
from __future__ import annotations

import re
from typing import Callable

from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import parse as parse_jsonpath

Getter = Callable[[object], list]
# `$.a.b_c` is answered by plain dict lookups: the same result as jsonpath-ng (checked by a
# property test) at a twentieth of the cost.
_DOTTED = re.compile(r"\$((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")


def compile_path(path: str) -> Getter:
    """Return a function giving every value the JSONPath matches; raise ValueError if invalid."""
    try:
        expression = parse_jsonpath(path)
    except (JsonPathParserError, JsonPathLexerError, Exception) as exc:  # jsonpath-ng raises bare Exceptions too
        raise ValueError(str(exc).strip() or "invalid JSONPath") from None
    keys = dotted_keys(path)
    if keys is None:
        return lambda document: [match.value for match in expression.find(document)]
    if len(keys) == 1:  # `$.event`, `$.messageId`: most paths, so without the loop
        [key] = keys
        return lambda document: [document[key]] if isinstance(document, dict) and key in document else []
    return lambda document: [] if (value := walk(document, keys)) is MISSING else [value]


def dotted_keys(path: str) -> tuple[str, ...] | None:
    """The keys of a plain dotted path (`$.a.b` -> ("a", "b")), which matches at most one value; else None."""
    dotted = _DOTTED.fullmatch(path)
    return tuple(dotted.group(1)[1:].split(".")) if dotted else None


MISSING = object()  # what walk() gives when a key is absent (a present key may hold null)


def walk(document, keys):
    """The value under `keys` by plain dict lookups, or MISSING."""
    for key in keys:
        if not isinstance(document, dict) or key not in document:
            return MISSING
        document = document[key]
    return document


class Placeholder(str):
    """The JSONPath inside one `{{...}}` of a template (a str, so parts compare simply)."""


def split_template(template: str) -> list[str]:
    """Literal text and Placeholder paths in order; raise ValueError for a malformed template."""
    parts, position = [], 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(template[position:match.start()])
        path = match.group(1).strip()
        if not path:
            raise ValueError(f"empty placeholder at character {match.start()}")
        parts.append(Placeholder(path))
        position = match.end()
    parts.append(template[position:])
    literal_text = "".join(p for p in parts if not isinstance(p, Placeholder))
    if "{{" in literal_text or "}}" in literal_text:
        raise ValueError("unbalanced '{{' or '}}'")
    if not any(isinstance(p, Placeholder) for p in parts):
        raise ValueError("has no {{JSONPath}} placeholder; use 'literal' for fixed text")
    return [p for p in parts if p != ""]
