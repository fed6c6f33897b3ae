"""The baseline: the least a Python relay can do per request (read the body, orjson.loads,
orjson.dumps, answer 200), served by gunicorn exactly as our app is."""
import orjson


def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    out = orjson.dumps(orjson.loads(body)) if body else b"{}"
    answer = orjson.dumps({"ok": True, "bytes": len(out)})
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
    return [answer]
