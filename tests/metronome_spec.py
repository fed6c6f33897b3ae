"""Metronome's official schemas as a test oracle: every answer the sandbox gives in a test, and every
batch our worker sends it, must fit the spec (tests/data/metronome-openapi-subset.json, cut from
the spec by scripts/metronome_openapi_subset.py).

jsonschema checks `date-time` through rfc3339-validator and `uuid` itself, so ids and times are
held to the spec's formats too.
"""
from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from functools import lru_cache

import jsonschema
from flask import request

from conftest import DATA
from destination.metronome import USER_AGENT

DOC = json.loads((DATA / "metronome-openapi-subset.json").read_text())
FORMATS = jsonschema.Draft202012Validator.FORMAT_CHECKER


@lru_cache(maxsize=None)
def validator(operation: str, part: str):
    """`part` is "request" or a status such as "200"; "error" is the spec's Error schema."""
    schema = {"$ref": "#/$defs/Error"} if part == "error" else (
        DOC["operations"][operation]["request"] if part == "request" else DOC["operations"][operation]["responses"][part])
    return jsonschema.Draft202012Validator({"$defs": DOC["$defs"], **schema}, format_checker=FORMATS)


def problems(operation: str, part: str, value) -> list[str]:
    return [f"{operation} {part} /{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator(operation, part).iter_errors(value)]


class Conformance:
    """Attached to a sandbox app: checks each exchange as it happens, and keeps what did not fit."""

    def __init__(self):
        self.problems: list[str] = []
        self.checked: Counter = Counter()

    def attach(self, app) -> None:
        app.after_request(self._after)

    def _after(self, response):
        try:
            self._check(response)
        except Exception as exc:  # a broken check must fail the test, not the sandbox's answer
            self.problems.append(f"{request.method} {request.path}: the check itself failed: {exc!r}")
        return response

    def _check(self, response) -> None:
        rule = request.url_rule.rule if request.url_rule else None
        path = re.sub(r"<(\w+)>", r"{\1}", rule) if rule else request.path
        operation = f"{request.method} {path}"
        if not request.path.startswith("/v1/"):
            return  # the sandbox's own read-back and fault routes
        if operation == "POST /v1/ingest" and request.headers.get("User-Agent") == USER_AGENT:
            raw = request.get_data()
            if request.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            self.problems += problems(operation, "request", json.loads(raw))
            self.checked["worker request"] += 1
        status = str(response.status_code)
        known = DOC["operations"].get(operation, {}).get("responses", {})
        if status in known:
            self.problems += problems(operation, status, json.loads(response.get_data()))
        elif response.status_code >= 400:
            self.problems += problems(operation, "error", json.loads(response.get_data()))
        elif response.get_data():
            self.problems.append(f"{operation} {status}: the spec gives no body, the sandbox sent one")
        self.checked[operation] += 1
