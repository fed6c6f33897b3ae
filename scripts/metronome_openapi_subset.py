"""Cut the request and response schemas of the endpoints the sandbox serves out of Metronome's spec.

Usage: python scripts/metronome_openapi_subset.py PATH/TO/metronome-openapi.json

Writes the same document to two places: the sandbox validates request bodies against its copy,
and the tests check every answer against theirs, so the suite needs no file outside the repo.
OpenAPI 3.0's `nullable` becomes a JSON Schema type union, so a stock validator reads it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = [ROOT / "destination" / "sandbox" / "metronome-openapi-subset.json",
           ROOT / "tests" / "data" / "metronome-openapi-subset.json"]
OPERATIONS = [  # (method, path) the sandbox serves
    ("post", "/v1/ingest"),
    ("get", "/v1/customers"), ("post", "/v1/customers"), ("get", "/v1/customers/{customer_id}"),
    ("post", "/v1/customers/{customer_id}/setIngestAliases"),
    ("post", "/v1/billable-metrics/create"), ("get", "/v1/billable-metrics"),
    ("get", "/v1/billable-metrics/{billable_metric_id}"), ("post", "/v1/billable-metrics/archive"),
    ("get", "/v1/customers/{customer_id}/billable-metrics"),
    ("post", "/v1/events/search"), ("post", "/v1/usage"), ("post", "/v1/usage/groups"),
    ("post", "/v1/contract-pricing/products/create"), ("post", "/v1/contract-pricing/rate-cards/create"),
    ("post", "/v1/contract-pricing/rate-cards/addRates"), ("post", "/v1/contracts/create"),
    ("get", "/v1/customers/{customer_id}/invoices"), ("post", "/v1/customers/{customer_id}/previewEvents"),
]
DROP = {"description", "example", "examples", "x-mint", "x-mint-enum", "x-stainless-skip", "x-stainless-naming",
        "x-cf-entity", "x-stainless-go-variant-constructor", "deprecated", "discriminator", "x-slo-tier"}


def plain(node):
    """OpenAPI 3.0 schema -> JSON Schema 2020-12: `nullable` as a union; prose and vendor keys dropped."""
    if isinstance(node, list):
        return [plain(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: plain(value) for key, value in node.items() if key not in DROP and key != "nullable"}
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    return out


def refs(node, found: set) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    responses = spec["components"].get("responses", {})
    operations = {}
    for method, path in OPERATIONS:
        op = spec["paths"][path][method]
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        answers = {}
        for status, answer in op["responses"].items():
            if "$ref" in answer:
                answer = responses[answer["$ref"].rsplit("/", 1)[1]]
            schema = answer.get("content", {}).get("application/json", {}).get("schema")
            if schema is not None:
                answers[status] = schema
        operations[f"{method.upper()} {path}"] = {"request": body, "responses": answers}
    names: set = set()
    refs(operations, names)
    schemas = spec["components"]["schemas"]
    done: set = set()
    while names - done:  # follow references to a fixed point
        name = (names - done).pop()
        done.add(name)
        refs(schemas[name], names)
    document = {
        "source": "Metronome's OpenAPI spec (metronome-openapi.json), cut by scripts/metronome_openapi_subset.py",
        "operations": plain(operations),
        "$defs": {name: plain(schemas[name]) for name in sorted(done)},
    }
    text = json.dumps(document, indent=1, sort_keys=True) + "\n"
    for target in TARGETS:
        target.write_text(text)
        print(f"wrote {target.relative_to(ROOT)}: {len(operations)} operations, {len(done)} schemas, {len(text):,} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared" / "reference" / "metronome-openapi.json"))
