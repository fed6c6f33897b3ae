"""The admin page in a real headless Chromium: fix a mapping with a live preview, save it, and
replay the events it refused; they reach the sandbox with their original transaction_ids.

The `browser` fixture and the page helper are in tests/browser.py.
"""
import json

import pytest
import requests

from browser import Page, screenshot
from conftest import BIG, LONG, ROOT, live_service, wait_until, with_numbers

ADMIN = "page-admin-token"
MAPPING = json.loads((ROOT / "destination" / "mappings" / "default.json").read_text())["mappings"][0]


@pytest.fixture
def live(settings, queue, clock, sandbox):
    with live_service(settings, queue, clock, admin_tokens={ADMIN: "alice"}) as service:
        yield service


def group_only(message_id: str, when: str) -> dict:
    return {"type": "track", "event": "seat_hours", "messageId": message_id, "timestamp": when,
            "context": {"groupId": "org_42"}, "properties": {"hours": 3}}


def test_a_wrong_token_sees_nothing(browser, live):
    page = Page(browser, live.url)
    page.sign_in("not-the-token")
    page.until_text("login-error", "valid admin token")
    assert page.el("tabs").is_displayed() is False and page.css("#mapping-rows tr") == []


def test_fixing_a_mapping_in_the_page_saves_the_events_it_refused(browser, live, sandbox, clock, tmp_path):
    from selenium.webdriver.support.ui import Select

    ids = [f"grp-{i:02d}" for i in range(12)]
    assert live.post([group_only(i, clock.iso()) for i in ids]).json()["refused"] == 12

    page = Page(browser, live.url)
    page.sign_in(ADMIN)
    page.wait.until(lambda _: page.css('#mapping-rows tr[data-name="track events as usage"]'), "the mapping list")
    assert page.el("live-version").text.startswith("live mappings v1")
    page.css('#mapping-rows tr[data-name="track events as usage"] button[data-action="edit"]')[0].click()

    # A refused event, picked from the recently received ones: the preview says why.
    page.wait.until(lambda _: len(Select(page.el("recent-events")).options) > 1, "recent events")
    Select(page.el("recent-events")).select_by_index(1)
    page.until_text("preview-status", "refused", "missing_customer_id")

    # An invalid edit is shown inline, with its location.
    broken = {**MAPPING, "fields": {**MAPPING["fields"], "customer_id": {"path": "$.context.groupId["}}}
    page.type_into("mapping-editor", json.dumps(broken, indent=2))
    page.until_text("mapping-errors", "/mappings/0/fields/customer_id/path:")

    # The fix: the preview changes to the usage event Metronome would get.
    fixed = {**MAPPING, "fields": {**MAPPING["fields"], "customer_id": {"path": ["$.userId", "$.anonymousId", "$.context.groupId"]}}}
    page.type_into("mapping-editor", json.dumps(fixed, indent=2))
    page.until_text("preview-status", "accepted: 1 usage event")
    assert '"customer_id": "org_42"' in page.until_text("preview-output", "org_42")
    assert page.el("mapping-errors").text == ""
    screenshot(browser, tmp_path, "admin-page-preview.png")
    assert sandbox.state.requests == []  # a preview sends nothing

    page.type_into("comment", "B2B senders put the account in context.groupId")
    page.el("save").click()
    page.until_text("save-status", "saved as v2")
    page.until_text("live-version", "live mappings v2 · alice")

    page.css('#tabs [data-tab="versions"]')[0].click()
    page.wait.until(lambda _: len(page.css("#version-rows tr")) == 2, "two versions")
    assert "B2B senders" in page.css('#version-rows tr[data-version="v2"]')[0].text

    page.css('#tabs [data-tab="dead-letters"]')[0].click()
    page.wait.until(lambda _: len(page.css("#dl-rows tr")) == 12, "12 dead letters")
    page.type_into("dl-code", "missing_customer_id")
    page.el("dl-apply").click()
    page.el("dl-replay-all").click()
    page.until_text("dl-status", "replayed 12: 12 resolved, 0 still refused, 12 usage event(s) queued")

    delivered = wait_until(lambda: len(sandbox.state.events) == 12 and dict(sandbox.state.events), message="the replayed events")
    assert sorted(delivered) == ids  # the original transaction_ids
    assert {e["customer_id"] for e in delivered.values()} == {"org_42"}
    page.wait.until(lambda _: page.css("#dl-rows tr") == [], "the dead letters to be gone")
    screenshot(browser, tmp_path, "admin-page-after-replay.png")

    # Roll back from the page: the old document is live again as v3.
    page.css('#tabs [data-tab="versions"]')[0].click()
    page.wait.until(lambda _: page.css('#version-rows tr[data-version="v1"] button[data-action="rollback"]'), "v1's rollback")
    page.css('#version-rows tr[data-version="v1"] button[data-action="rollback"]')[0].click()
    page.until_text("version-status", "live mappings are now v3")
    live_doc = requests.get(live.url + "/admin/mappings", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5).json()
    assert (live_doc["version"], live_doc["document"]["mappings"][0]) == ("v3", MAPPING)


def test_numbers_past_a_double_are_shown_previewed_and_saved_exactly(browser, live, clock):
    """JSON.parse would round them: the editor would show 1.2345678901234568e+22 and a save would
    make the mapping match a number nobody sends."""
    document = {"mappings": [{**MAPPING, "trigger": {"all": [MAPPING["trigger"], {"path": "$.properties.plan", "in": ["<big>", "<long>"]}]}}]}
    text = with_numbers(document, big=BIG, long=LONG).decode()
    headers = {"Authorization": f"Bearer {ADMIN}"}
    assert requests.put(live.url + "/admin/mappings", json={"document": text, "comment": "numeric plans"}, headers=headers,
                        timeout=5).status_code == 200
    refused = with_numbers([{**group_only("big-1", clock.iso()), "properties": {"plan": "<big>"}}], big=BIG)
    answer = requests.post(live.url + "/v1/events", data=refused, auth=("test-write-key", ""), timeout=5,
                           headers={"Content-Type": "application/json"})
    assert answer.json()["refused"] == 1

    page = Page(browser, live.url)
    page.sign_in(ADMIN)
    page.wait.until(lambda _: page.css('#mapping-rows tr[data-name="track events as usage"]'), "the mapping list")
    page.css('#mapping-rows tr[data-name="track events as usage"] button[data-action="edit"]')[0].click()
    editor = page.el("mapping-editor").get_property("value")
    assert f"{BIG},\n" in editor and f"{LONG}\n" in editor  # unquoted, every digit

    from selenium.webdriver.support.ui import Select
    page.wait.until(lambda _: len(Select(page.el("recent-events")).options) > 1, "recent events")
    Select(page.el("recent-events")).select_by_index(1)
    assert f'"plan": {BIG}' in page.el("preview-event").get_property("value")
    page.until_text("preview-status", "refused", "missing_customer_id")

    page.type_into("comment", "saved from the page, numbers untouched")
    page.el("save").click()
    page.until_text("save-status", "saved as v3")
    saved = requests.get(live.url + "/admin/mappings", headers=headers, timeout=5).text
    assert f'"in":[{BIG},{LONG}]' in saved

    page.css('#tabs [data-tab="dead-letters"]')[0].click()
    page.wait.until(lambda _: len(page.css("#dl-rows tr")) == 1, "the dead letter")
    page.css('#dl-rows tr button[data-action="inspect"]')[0].click()
    page.until_text("dl-detail", f'"plan": {BIG}')


def test_the_page_is_served_with_a_strict_policy_and_no_data(live):
    answer = requests.get(live.url + "/admin/ui/", timeout=5)
    assert answer.status_code == 200 and "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["Cache-Control"] == "no-store" and "<script src=\"/admin/ui/app.js\"" in answer.text
    assert "track events as usage" not in answer.text
    assert requests.get(live.url + "/admin/ui/secrets.txt", timeout=5).status_code == 404


def test_a_save_that_changes_the_transaction_id_rule_asks_the_admin_first(browser, live, tmp_path):
    page = Page(browser, live.url)
    page.sign_in(ADMIN)
    page.wait.until(lambda _: page.css('#mapping-rows tr[data-name="track events as usage"]'), "the mapping list")
    page.css('#mapping-rows tr[data-name="track events as usage"] button[data-action="edit"]')[0].click()
    rehashed = {**MAPPING, "fields": {**MAPPING["fields"], "transaction_id": {"hash": ["$.userId", "$.timestamp"]}}}
    page.type_into("mapping-editor", json.dumps(rehashed, indent=2))
    page.el("save").click()
    alert = page.wait.until(lambda driver: _alert(driver), "the page to ask")
    assert "builds its transaction_id" in alert.text and "'track events as usage'" in alert.text
    alert.dismiss()
    page.wait.until(lambda driver: not _alert(driver), "the dialog to close")  # the page answers nothing while it is open
    page.until_text("save-status", "not saved: the transaction_id rule was kept")
    page.el("save").click()
    page.wait.until(lambda driver: _alert(driver), "the page to ask again").accept()
    page.wait.until(lambda driver: not _alert(driver), "the dialog to close")
    page.until_text("save-status", "saved as v2")
    live_doc = requests.get(live.url + "/admin/mappings", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5).json()
    assert live_doc["document"]["mappings"][0]["fields"]["transaction_id"] == {"hash": ["$.userId", "$.timestamp"]}


def _alert(driver):
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return False
