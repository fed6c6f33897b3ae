"""Metronome's own request schemas, and the error every sandbox route answers with.

`metronome-openapi-subset.json` is cut from Metronome's official OpenAPI spec by
`scripts/metronome_openapi_subset.py`: each route validates its body against the operation's
schema, so a body Metronome would refuse for its shape is refused here too, with the path of the
first problem. Rules the schema cannot say (an aggregation key that is not a filter) are checked
by the route.
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from importlib import resources

import jsonschema


class ApiError(Exception):
    """An answer other than 200: `{"message": ...}` with this status, as Metronome answers."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def found(table: dict, key: str, what: str):
    """`table[key]`, or a 404 that names what was not found: every lookup of an id a caller sent."""
    try:
        return table[key]
    except KeyError:
        raise ApiError(404, f"{what} {key} not found") from None


@lru_cache(maxsize=1)
def document() -> dict:
    return json.loads(resources.files("destination.sandbox").joinpath("metronome-openapi-subset.json").read_text())


FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value) -> bool:
    """RFC 3339 with a zone; jsonschema checks date-time only with an optional package."""
    if not isinstance(value, str) or "T" not in value.upper():
        return False
    return datetime.fromisoformat(value.replace("z", "Z")).tzinfo is not None


@lru_cache(maxsize=None)
def _validator(operation: str):
    schema = document()["operations"][operation]["request"]
    return jsonschema.Draft202012Validator({"$defs": document()["$defs"], **schema}, format_checker=FORMATS)


def check_body(operation: str, body) -> dict:
    """The body if it fits the operation's request schema; else ApiError 400 naming the first problem."""
    errors = sorted(_validator(operation).iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(part) for part in errors[0].absolute_path)
        raise ApiError(400, f"{where + ': ' if where else ''}{errors[0].message}")
    return body
