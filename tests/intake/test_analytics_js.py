"""analytics.js (@segment/analytics-next, the build a page loads) in a real headless Chromium,
on a page of another origin, pointed at the service with `apiHost`: it posts cross-origin
(so the Tracking API routes answer CORS), and its events reach the sandbox."""
import functools
import http.server
import shutil
import subprocess
import threading

import pytest
import requests

from conftest import ROOT, live_service, wait_until

BUNDLE = ROOT / "tests" / "node" / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd" / "index.js"
WRITE_KEY = "browser-write-key"
PAGE = """<!doctype html><html><body><p id="status">loading</p>
<script src="analytics.js"></script>
<script>
  const analytics = AnalyticsNext.AnalyticsBrowser.load(
    {writeKey: "%(key)s", cdnSettings: {integrations: {"Segment.io": {apiKey: "%(key)s", apiHost: "127.0.0.1:%(port)d/v1", protocol: "http"}}}},
    {integrations: {"Segment.io": {apiHost: "127.0.0.1:%(port)d/v1", protocol: "http"}}});
  analytics.identify("user_42").then(() => analytics.track("transfer", {bytes: 5000, region: "us-east-1"}))
    .then((ctx) => { document.getElementById("status").textContent = "sent " + ctx.event.messageId; })
    .catch((e) => { document.getElementById("status").textContent = "error " + e; });
</script></body></html>"""


@pytest.fixture
def page_server(tmp_path):
    """Another origin for the page: a static server on its own port, as a customer's site is."""
    if not BUNDLE.exists():  # as test_sdks.py does for analytics-node: the versions in package-lock.json
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BUNDLE.parents[4], check=True, capture_output=True,
                       timeout=300)
    shutil.copy(BUNDLE, tmp_path / "analytics.js")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, tmp_path
    server.shutdown()
    server.server_close()


@pytest.fixture
def live(settings, queue, clock, sandbox):
    with live_service(settings, queue, clock, write_keys={WRITE_KEY: "browser"}) as service:
        yield service


def test_the_tracking_routes_answer_a_browser_preflight(live):
    answer = requests.options(live.url + "/v1/t", headers={"Origin": "https://shop.example.com",
                                                           "Access-Control-Request-Method": "POST"}, timeout=5)
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == "*" and "POST" in answer.headers["Access-Control-Allow-Methods"]
    hook = requests.options(live.url + "/v1/webhook", timeout=5)  # server to server: no CORS
    assert hook.status_code == 405 and "Access-Control-Allow-Origin" not in hook.headers


@pytest.mark.parametrize("backend", ["sqlite"])  # the browser SDK is the subject; the stores are covered elsewhere
def test_analytics_js_on_another_origin_reaches_the_sandbox(browser, page_server, live, sandbox):
    server, folder = page_server
    port = int(live.url.rsplit(":", 1)[1])
    (folder / "index.html").write_text(PAGE % {"key": WRITE_KEY, "port": port})
    browser.get(f"http://127.0.0.1:{server.server_address[1]}/index.html")
    status = wait_until(lambda: (text := browser.find_element("id", "status").text) != "loading" and text,
                        message="analytics.js to send")
    assert status.startswith("sent "), status
    message_id = status.split(" ", 1)[1]
    usage = wait_until(lambda: sandbox.state.events.get(message_id), message="the browser's event at the sandbox")
    assert (usage["customer_id"], usage["event_type"], usage["properties"]) == (
        "user_42", "transfer", {"bytes": "5000", "region": "us-east-1"})
