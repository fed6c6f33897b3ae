"""The admin API: mappings with versions, rollback and export; preview that sends nothing; dead
letters that can be filtered, inspected, replayed with their original transaction_ids, and deleted."""
import copy
import json

import orjson
import pytest
import requests

from conftest import BIG, LONG, ROOT, WRITE_KEY, LiveService, track, wait_until, with_numbers
from destination.app import create_app
from destination.mapping.versions import compile_text
from destination.payload import exact

ADMIN = "admin-token-one"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
DEFAULT = json.loads((ROOT / "destination" / "mappings" / "default.json").read_text())


@pytest.fixture
def admin_settings(settings):
    return settings.replace(admin_tokens={ADMIN: "alice", "admin-token-two": "bob"})


@pytest.fixture
def admin(admin_settings, queue, clock):
    return create_app(admin_settings, queue=queue, clock=clock).test_client()


@pytest.fixture
def live(admin_settings, queue, clock, sandbox):
    service = LiveService(create_app(admin_settings, queue=queue, clock=clock), admin_settings, queue, clock).start()
    yield service
    service.close()


def send(client, body):
    return client.post("/v1/events", data=orjson.dumps(body), auth=(WRITE_KEY, ""))


def group_only(message_id: str, when: str) -> dict:
    """A track event from a B2B sender that names the account only in context.groupId."""
    return {"type": "track", "event": "seat_hours", "messageId": message_id, "timestamp": when,
            "context": {"groupId": "org_42"}, "properties": {"hours": 3}}


def with_customer_from_group(document: dict) -> dict:
    fixed = copy.deepcopy(document)
    fixed["mappings"][0]["fields"]["customer_id"]["path"] = ["$.userId", "$.anonymousId", "$.context.groupId"]
    return fixed


# -- mappings: versions, CRUD, rollback, export ----------------------------------------------------------

def test_the_shipped_file_seeds_version_one(admin):
    live = admin.get("/admin/mappings", headers=AUTH).json
    assert (live["version"], live["author"], live["document"]) == ("v1", "seed", DEFAULT)
    assert live["comment"] == "seeded from default.json"


def test_every_edit_is_a_version_with_its_author_and_comment(admin):
    saved = admin.put("/admin/mappings", headers=AUTH, json={"document": with_customer_from_group(DEFAULT),
                                                              "comment": "B2B senders"})
    assert saved.status_code == 200 and saved.json["version"] == "v2"
    assert (saved.json["author"], saved.json["comment"]) == ("alice", "B2B senders")
    listed = admin.get("/admin/mappings/versions", headers={"Authorization": "Bearer admin-token-two"}).json["versions"]
    assert [(v["version"], v["author"], v["comment"]) for v in listed] == [
        ("v2", "alice", "B2B senders"), ("v1", "seed", "seeded from default.json")]


def test_one_mapping_can_be_added_replaced_and_deleted(admin):
    extra = {"name": "pages", "trigger": {"path": "$.type", "equals": "page"},
             "fields": {**DEFAULT["mappings"][0]["fields"], "event_type": {"literal": "page_view"}}}
    added = admin.post("/admin/mappings/items", headers=AUTH, json={"mapping": extra, "comment": "pages"})
    assert added.status_code == 201 and [m["name"] for m in added.json["document"]["mappings"]] == [
        "track events as usage", "pages"]
    replaced = admin.put("/admin/mappings/items/pages", headers=AUTH, json={"mapping": {**extra, "enabled": False}})
    assert replaced.json["version"] == "v3" and replaced.json["document"]["mappings"][1]["enabled"] is False
    deleted = admin.delete("/admin/mappings/items/pages", headers=AUTH)
    assert deleted.json["version"] == "v4" and deleted.json["document"] == DEFAULT
    assert deleted.json["comment"] == "deleted pages"
    missing = admin.delete("/admin/mappings/items/nope", headers=AUTH)
    assert (missing.status_code, missing.json["code"]) == (404, "no_such_mapping")


def test_an_invalid_mapping_is_refused_with_every_location_and_stores_nothing(admin):
    bad = copy.deepcopy(DEFAULT)
    bad["mappings"][0]["fields"]["customer_id"] = {"path": "$.userId["}
    del bad["mappings"][0]["fields"]["timestamp"]
    response = admin.put("/admin/mappings", headers=AUTH, json={"document": bad})
    assert (response.status_code, response.json["code"]) == (400, "invalid_mapping")
    [path_error, missing] = response.json["errors"]  # both at once: the path is compiled despite the shape error
    assert path_error.startswith("/mappings/0/fields/customer_id/path: ")
    assert missing == "/mappings/0/fields/timestamp: Missing data for required field."
    bad["mappings"][0]["fields"]["timestamp"] = {"path": "$.timestamp"}
    errors = admin.put("/admin/mappings", headers=AUTH, json={"document": bad}).json["errors"]
    assert errors == [path_error]
    text = admin.put("/admin/mappings", headers=AUTH, json={"document": "{not json"}).json
    assert text["errors"][0].startswith("/: not valid JSON")
    assert admin.get("/admin/mappings", headers=AUTH).json["version"] == "v1"


def test_rollback_saves_the_old_document_as_the_newest_version(admin):
    admin.put("/admin/mappings", headers=AUTH, json={"document": with_customer_from_group(DEFAULT)})
    rolled = admin.post("/admin/mappings/rollback", headers=AUTH, json={"version": 1})
    assert rolled.json == {"version": "v3", "id": 3, "rolled_back_to": "v1"}
    live = admin.get("/admin/mappings", headers=AUTH).json
    assert (live["version"], live["document"], live["comment"]) == ("v3", DEFAULT, "rollback to v1")
    assert admin.post("/admin/mappings/rollback", headers=AUTH, json={"version": 99}).json["code"] == "no_such_version"
    assert admin.post("/admin/mappings/rollback", headers=AUTH, json={"version": "1"}).status_code == 400


def test_a_version_exports_as_a_file_that_loads_again(admin, tmp_path):
    admin.put("/admin/mappings", headers=AUTH, json={"document": with_customer_from_group(DEFAULT)})
    exported = admin.get("/admin/mappings/versions/2/export", headers=AUTH)
    assert exported.headers["Content-Disposition"] == 'attachment; filename="mappings-v2.json"'
    assert json.loads(exported.data) == with_customer_from_group(DEFAULT)
    assert compile_text(exported.data, "exported").mappings[0].name == "track events as usage"
    assert admin.get("/admin/mappings/versions/1", headers=AUTH).json["document"] == DEFAULT


def test_numbers_past_a_double_come_back_as_numbers_so_a_save_from_the_answer_keeps_matching(admin, clock):
    """They are Decimals once read; an answer that wrote them as strings would have a document
    saved from it (as the admin page saves) compare events' numbers with text and match none."""
    document = copy.deepcopy(DEFAULT)
    document["mappings"][0]["trigger"] = {"all": [document["mappings"][0]["trigger"],
                                                  {"path": "$.properties.plan", "in": ["<big>", "<long>"]}]}
    text = with_numbers(document, big=BIG, long=LONG).decode()
    assert admin.put("/admin/mappings", json={"document": text, "comment": "numeric plans"}, headers=AUTH).status_code == 200
    answer = admin.get("/admin/mappings", headers=AUTH)
    assert f'"in":[{BIG},{LONG}]' in answer.data.decode()
    resaved = admin.put("/admin/mappings", data=exact.dumps({"document": exact.loads(answer.data)["document"], "comment": "as answered"}),
                        headers={**AUTH, "Content-Type": "application/json"})
    assert resaved.json["version"] == "v3"

    body = with_numbers([track("plan-big", clock.iso(), plan="<big>"), track("plan-long", clock.iso(), plan="<long>"),
                         track("plan-7", clock.iso(), plan=7)], big=BIG, long=LONG)
    counts = admin.post("/v1/events", data=body, auth=(WRITE_KEY, ""), content_type="application/json").json
    assert (counts["accepted"], counts["filtered"]) == (2, 1)

    refused = with_numbers([{**group_only("big-letter", clock.iso()), "properties": {"plan": "<big>", "seats": "<big>"}}], big=BIG)
    assert admin.post("/v1/events", data=refused, auth=(WRITE_KEY, ""), content_type="application/json").json["refused"] == 1
    [letter] = admin.get("/admin/dead-letters", headers=AUTH).json["dead_letters"]
    assert f'"seats":{BIG}' in admin.get(f"/admin/dead-letters/{letter['id']}", headers=AUTH).data.decode()


def test_an_edit_is_live_for_the_next_event(admin, clock, queue):
    assert send(admin, group_only("g0", clock.iso())).json["refused"] == 1
    admin.put("/admin/mappings", headers=AUTH, json={"document": with_customer_from_group(DEFAULT)})
    answer = send(admin, group_only("g1", clock.iso())).json
    assert answer["accepted"] == 1 and answer["events"][0]["transaction_ids"] == ["g1"]
    assert queue._dicts("SELECT transaction_id, mapping_version FROM outbox") == [
        {"transaction_id": "g1", "mapping_version": "v2"}]
    [letter] = queue.list_dead_letters()
    assert letter["mapping_version"] == "v1"


# -- preview ------------------------------------------------------------------------------------------

def test_preview_maps_a_pasted_event_with_a_candidate_and_sends_nothing(admin, clock, queue, sandbox):
    event = group_only("p1", clock.iso()[:23] + "Z")  # milliseconds: what Metronome is sent
    before = admin.post("/admin/preview", headers=AUTH, json={"event": event}).json
    assert before["valid"] and before["mapping_version"] == "v1"
    assert [e["code"] for e in before["events"][0]["errors"]] == ["missing_customer_id"]
    after = admin.post("/admin/preview", headers=AUTH, json={"event": event, "document": with_customer_from_group(DEFAULT)}).json
    assert after["events"][0]["status"] == "accepted"
    assert after["events"][0]["usage_events"] == [{"transaction_id": "p1", "customer_id": "org_42", "event_type": "seat_hours",
                                                   "timestamp": event["timestamp"], "properties": {"hours": "3"}}]
    assert queue.depth() == 0 and queue.dead_letter_count() == 0 and sandbox.state.requests == []


def test_preview_of_an_invalid_candidate_answers_its_errors_for_inline_display(admin):
    bad = copy.deepcopy(DEFAULT)
    bad["mappings"][0]["trigger"] = {"path": "$.type", "equals": "track", "in": ["x"]}
    answer = admin.post("/admin/preview", headers=AUTH, json={"document": bad, "event": {"type": "track"}})
    assert answer.status_code == 200
    assert answer.json["valid"] is False
    assert answer.json["mapping_errors"] == [
        "/mappings/0/trigger: a condition needs 'path' and exactly one of equals, in, exists, not_exists, starts_with, contains"]


def test_preview_can_use_the_last_events_received(admin, clock):
    send(admin, [track("r1", clock.iso(), tokens=1), track("r2", clock.iso(), tokens=2)])
    recent = admin.get("/admin/recent-events?limit=5", headers=AUTH).json["events"]
    assert [e["event"]["messageId"] for e in recent] == ["r2", "r1"] and recent[0]["source"] == "test"
    answer = admin.post("/admin/preview", headers=AUTH, json={"recent": 2}).json
    assert [[u["transaction_id"] for u in e["usage_events"]] for e in answer["events"]] == [["r2"], ["r1"]]


@pytest.mark.parametrize("body, code", [
    ({}, "nothing_to_preview"), ({"recent": 0}, "invalid_recent"), ({"recent": "5"}, "invalid_recent"),
    ({"events": []}, "nothing_to_preview"), ([1, 2], "invalid_body"),
])
def test_preview_refuses_a_request_that_names_no_events(admin, body, code):
    response = admin.post("/admin/preview", headers=AUTH, json=body)
    assert (response.status_code, response.json["code"]) == (400, code)


def test_a_malformed_admin_body_is_a_clear_400(admin):
    response = admin.put("/admin/mappings", headers={**AUTH, "Content-Type": "application/json"}, data=b"{")
    assert (response.status_code, response.json["code"]) == (400, "malformed_json")


# -- dead letters --------------------------------------------------------------------------------------

def test_dead_letters_filter_by_reason_and_time_and_show_the_raw_event(admin, clock):
    send(admin, [group_only("d1", clock.iso()), track("d2", clock.iso(), customer="")])
    letters = admin.get("/admin/dead-letters", headers=AUTH).json
    assert letters["total"] == 2 and [l["code"] for l in letters["dead_letters"]] == ["missing_customer_id"] * 2
    one = admin.get(f"/admin/dead-letters/{letters['dead_letters'][0]['id']}", headers=AUTH).json
    assert one["event"] == group_only("d1", one["event"]["timestamp"])
    assert (one["mapping_version"], one["stage"], one["source"]) == ("v1", "receive", "test")
    assert "customer_id is required" in one["reason"]
    now_ms = int(clock() * 1000)
    assert admin.get(f"/admin/dead-letters?since_ms={now_ms + 60_000}", headers=AUTH).json["count"] == 0
    assert admin.get(f"/admin/dead-letters?until_ms={now_ms + 60_000}&code=missing_customer_id", headers=AUTH).json["count"] == 2
    assert admin.get("/admin/dead-letters?code=timestamp_too_old", headers=AUTH).json["count"] == 0
    assert admin.get("/admin/dead-letters?since_ms=yesterday", headers=AUTH).json["code"] == "invalid_since_ms"
    assert admin.get("/admin/dead-letters/999", headers=AUTH).status_code == 404


def test_replaying_one_that_is_still_refused_records_the_new_mapping_version(admin, clock):
    send(admin, group_only("s1", clock.iso()))
    [letter] = admin.get("/admin/dead-letters", headers=AUTH).json["dead_letters"]
    admin.put("/admin/mappings", headers=AUTH, json={"document": DEFAULT, "comment": "same again"})
    answer = admin.post(f"/admin/dead-letters/{letter['id']}/replay", headers=AUTH).json
    assert (answer["replayed"], answer["resolved"], answer["still_dead"]) == (1, 0, 1)
    after = admin.get(f"/admin/dead-letters/{letter['id']}", headers=AUTH).json
    assert (after["code"], after["mapping_version"], after["attempts"]) == ("missing_customer_id", "v2", 1)


def test_a_replay_the_mapping_no_longer_subscribes_to_stays_dead_and_says_why(admin, clock):
    send(admin, group_only("f1", clock.iso()))
    only_pages = copy.deepcopy(DEFAULT)
    only_pages["mappings"][0]["trigger"] = {"path": "$.type", "equals": "page"}
    admin.put("/admin/mappings", headers=AUTH, json={"document": only_pages})
    answer = admin.post("/admin/dead-letters/replay", headers=AUTH, json={"all": True}).json
    assert (answer["still_dead"], answer["usage_events_queued"]) == (1, 0)
    [letter] = admin.get("/admin/dead-letters", headers=AUTH).json["dead_letters"]
    assert letter["code"] == "filtered_on_replay"


def test_bulk_replay_and_delete_need_a_filter_or_all(admin):
    for path in ("/admin/dead-letters/replay", "/admin/dead-letters/delete"):
        response = admin.post(path, headers=AUTH, json={})
        assert (response.status_code, response.json["code"]) == (400, "no_filter")


def test_delete_one_and_by_filter(admin, clock):
    send(admin, [group_only("x1", clock.iso()), group_only("x2", clock.iso()), {"type": "track", "event": "e"}])
    letters = admin.get("/admin/dead-letters", headers=AUTH).json["dead_letters"]
    assert sorted(l["code"] for l in letters) == ["missing_customer_id", "missing_customer_id", "missing_transaction_id"]
    assert admin.delete(f"/admin/dead-letters/{letters[0]['id']}", headers=AUTH).json == {"deleted": 1}
    assert admin.post("/admin/dead-letters/delete", headers=AUTH, json={"code": "missing_customer_id"}).json == {"deleted": 1}
    assert [l["code"] for l in admin.get("/admin/dead-letters", headers=AUTH).json["dead_letters"]] == ["missing_transaction_id"]


def test_fixing_the_mapping_and_replaying_all_delivers_with_the_original_transaction_ids(live, clock, sandbox):
    """The issue's flow over HTTP: refused B2B events are saved by a mapping fix and a replay."""
    ids = [f"grp-{i}" for i in range(30)]
    answer = live.post([group_only(i, clock.iso()) for i in ids]).json()
    assert answer["refused"] == 30
    admin = requests.Session()
    admin.headers.update(AUTH)
    fixed = admin.put(live.url + "/admin/mappings", json={"document": with_customer_from_group(DEFAULT), "comment": "groupId"})
    assert fixed.json()["version"] == "v2"
    replayed = admin.post(live.url + "/admin/dead-letters/replay", json={"code": "missing_customer_id"}).json()
    assert (replayed["replayed"], replayed["resolved"], replayed["usage_events_queued"]) == (30, 30, 30)
    delivered = wait_until(lambda: len(sandbox.state.events) == 30 and sandbox.state.events, message="30 replayed events")
    assert sorted(delivered) == sorted(ids)
    assert {e["customer_id"] for e in delivered.values()} == {"org_42"}
    assert admin.get(live.url + "/admin/dead-letters").json()["total"] == 0
    # A second replay (nothing left) and a CDP retry of the same events create no new usage.
    assert admin.post(live.url + "/admin/dead-letters/replay", json={"all": True}).json()["replayed"] == 0
    wait_until(lambda: live.queue.depth() == 0, message="the replayed events to be acked")
    live.post([group_only(i, clock.iso()) for i in ids])
    wait_until(lambda: live.queue.depth() == 0, message="the retry to drain")
    assert len(sandbox.state.events) == 30 and sandbox.state.duplicates == 30


def test_a_save_based_on_an_old_version_is_refused_so_no_edit_is_lost(admin):
    admin.put("/admin/mappings", headers=AUTH, json={"document": with_customer_from_group(DEFAULT), "base_version": 1})
    stale = admin.put("/admin/mappings", headers={"Authorization": "Bearer admin-token-two"},
                      json={"document": DEFAULT, "base_version": 1, "comment": "bob's edit from v1"})
    assert (stale.status_code, stale.json["code"]) == (409, "conflict")
    assert stale.json["message"] == ("the live mappings are now v2 (saved by alice), not v1; "
                                     "reload them and apply your edit again")
    assert admin.get("/admin/mappings", headers=AUTH).json["document"] == with_customer_from_group(DEFAULT)
    assert admin.put("/admin/mappings", headers=AUTH, json={"document": DEFAULT, "base_version": "1"}).status_code == 400


@pytest.mark.parametrize("method, path, body, status, code", [
    ("put", "/admin/mappings", {"document": DEFAULT, "comment": 5}, 400, "invalid_comment"),
    ("post", "/admin/mappings/items", {"mapping": "pages"}, 400, "invalid_body"),
    ("put", "/admin/mappings/items/track events as usage", {"mapping": {"name": "x"}}, 400, "invalid_mapping"),
    ("put", "/admin/mappings", {"document": DEFAULT, "base_version": True}, 400, "invalid_version"),
    ("get", "/admin/dead-letters?limit=0", None, 400, "invalid_limit"),
    ("get", "/admin/mappings/versions?limit=5000", None, 400, "invalid_limit"),
    ("get", "/admin/mappings/versions/9", None, 404, "no_such_version"),
    # numbers past 64 bits, which reached the database and answered 500
    ("get", "/admin/dead-letters?since_ms=99999999999999999999999", None, 400, "invalid_since_ms"),
    ("get", "/admin/dead-letters?until_ms=9223372036854775808", None, 400, "invalid_until_ms"),
    ("get", "/admin/dead-letters?limit=%C2%B2", None, 400, "invalid_limit"),  # "²": isdigit, and int() refuses it
    ("get", "/admin/mappings/versions/99999999999999999999999/export", None, 404, "not_found"),
    ("get", "/admin/mappings/versions/9223372036854775808", None, 404, "not_found"),
    ("get", "/admin/dead-letters/9223372036854775808", None, 404, "not_found"),
    ("post", "/admin/dead-letters/9223372036854775808/replay", None, 404, "not_found"),
    ("delete", "/admin/dead-letters/9223372036854775808", None, 405, "method_not_allowed"),  # only the page takes that path
    ("post", "/admin/dead-letters/replay", {"since_ms": 2**64}, 400, "invalid_since_ms"),
    ("post", "/admin/dead-letters/delete", {"code": 5}, 400, "invalid_code"),
    ("post", "/admin/mappings/rollback", {"version": 2**63}, 400, "invalid_version"),
    ("put", "/admin/mappings", {"document": DEFAULT, "base_version": "v99999999999999999999"}, 400, "invalid_version"),
    ("get", "/admin/deliveries?transaction_id=a%00b", None, 400, "invalid_transaction_id"),
])
def test_each_bad_admin_request_gets_a_clear_error_and_changes_nothing(admin, method, path, body, status, code):
    sent = {"data": json.dumps(body), "content_type": "application/json"} if body is not None else {}  # ints past 64 bits too
    response = getattr(admin, method)(path, headers=AUTH, **sent)
    assert (response.status_code, response.json["code"]) == (status, code)
    assert response.json["message"]
    live = admin.get("/admin/mappings", headers=AUTH).json
    assert (live["version"], live["document"]) == ("v1", DEFAULT)


def test_base_version_and_rollback_take_the_version_name_the_api_gives_as_well_as_the_id(admin):
    live = admin.get("/admin/mappings", headers=AUTH).json
    assert (live["version"], live["id"]) == ("v1", 1)
    saved = admin.put("/admin/mappings", headers=AUTH, json={"document": with_customer_from_group(DEFAULT),
                                                             "base_version": live["version"]})
    assert saved.status_code == 200 and saved.json["version"] == "v2"
    back = admin.post("/admin/mappings/rollback", headers=AUTH, json={"version": "v1"})
    assert back.status_code == 200 and back.json == {"version": "v3", "id": 3, "rolled_back_to": "v1"}
    again = admin.post("/admin/mappings/rollback", headers=AUTH, json={"version": 2, "comment": "by id"})
    assert again.json["rolled_back_to"] == "v2"


def test_a_save_that_changes_how_a_mapping_builds_its_transaction_id_needs_confirming(admin):
    """A sender's retry of an event delivered under the old rule would get a new id: billed twice."""
    rehashed = copy.deepcopy(DEFAULT)
    rehashed["mappings"][0]["fields"]["transaction_id"] = {"hash": ["$.userId", "$.event", "$.timestamp"]}
    refused = admin.put("/admin/mappings", headers=AUTH, json={"document": rehashed})
    assert (refused.status_code, refused.json["code"]) == (409, "transaction_id_changed")
    assert "'track events as usage'" in refused.json["message"] and "confirm_id_change" in refused.json["message"]
    assert admin.get("/admin/mappings", headers=AUTH).json["version"] == "v1"  # nothing saved
    bad = admin.put("/admin/mappings", headers=AUTH, json={"document": rehashed, "confirm_id_change": "yes"})
    assert (bad.status_code, bad.json["code"]) == (400, "invalid_confirm_id_change")
    saved = admin.put("/admin/mappings", headers=AUTH, json={"document": rehashed, "confirm_id_change": True})
    assert saved.status_code == 200 and saved.json["version"] == "v2"
    # Other edits pass as before, and so does a new mapping: it has no old rule to change.
    renamed = copy.deepcopy(rehashed)
    renamed["mappings"][0]["fields"]["event_type"] = {"literal": "usage"}
    assert admin.put("/admin/mappings", headers=AUTH, json={"document": renamed}).status_code == 200
    # Going back to v1's rule is a change too, and a rollback is a save.
    back = admin.post("/admin/mappings/rollback", headers=AUTH, json={"version": "v1"})
    assert (back.status_code, back.json["code"]) == (409, "transaction_id_changed")
    assert admin.post("/admin/mappings/rollback", headers=AUTH, json={"version": "v1", "confirm_id_change": True}).json["version"] == "v4"
    item = copy.deepcopy(DEFAULT["mappings"][0])
    item["fields"]["transaction_id"] = {"template": "{{$.messageId}}-x"}
    one = admin.put("/admin/mappings/items/track events as usage", headers=AUTH, json={"mapping": item})
    assert (one.status_code, one.json["code"]) == (409, "transaction_id_changed")


def test_preview_and_replay_right_after_a_save_in_another_process_use_that_save(admin_settings, queue, clock):
    """Two processes of one deployment, each with its own once-a-second copy of the live mappings:
    a save in one is what the other's next preview and replay use (read your writes)."""
    one = create_app(admin_settings, queue=queue, clock=clock).test_client()
    other = create_app(admin_settings, queue=queue, clock=clock).test_client()
    refused = [group_only(f"g{i}", clock.iso()) for i in range(5)]
    assert send(other, refused).json["refused"] == 5  # the other process has read the live mappings (v1)
    for _ in range(3):  # each save's next preview and replay, in the process that did not save
        assert one.put("/admin/mappings", headers=AUTH, json={"document": with_customer_from_group(DEFAULT)}).status_code == 200
        preview = other.post("/admin/preview", headers=AUTH, json={"event": refused[0]}).json
        assert preview["events"][0]["status"] == "accepted" and preview["mapping_version"] != "v1"
        one.put("/admin/mappings", headers=AUTH, json={"document": DEFAULT})
        preview = other.post("/admin/preview", headers=AUTH, json={"event": refused[0]}).json
        assert preview["events"][0]["status"] == "refused"
    one.put("/admin/mappings", headers=AUTH, json={"document": with_customer_from_group(DEFAULT)})
    replayed = other.post("/admin/dead-letters/replay", headers=AUTH, json={"all": True}).json
    assert replayed["resolved"] == 5 and replayed["mapping_version"] == "v8"


def test_an_invalid_single_mapping_edit_names_its_location(admin):
    response = admin.put("/admin/mappings/items/track events as usage", headers=AUTH,
                         json={"mapping": {**DEFAULT["mappings"][0], "fields": {**DEFAULT["mappings"][0]["fields"],
                                                                                 "event_type": {"template": "{{$.event"}}}})
    assert response.json["errors"] == ["/mappings/0/fields/event_type/template: unbalanced '{{' or '}}'"]
