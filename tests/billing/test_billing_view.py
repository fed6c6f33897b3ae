"""The admin page's Billing view in a real headless Chromium: the chart shows the typo events,
and a refresh after the missing metric is created clears them."""
import json

import pytest
import requests

from browser import Page, screenshot
from conftest import LiveService, track, wait_until
from destination.app import create_app
from destination.sandbox.seed import load_seed, read_seed
from metronome_api import Api

ADMIN = "billing-admin-token"


@pytest.fixture
def live(settings, queue, clock, sandbox):
    load_seed(sandbox.state, read_seed("guide"))
    # An hour between refreshes, so only the page's button picks up the new metric.
    settings = settings.replace(admin_tokens={ADMIN: "alice"}, billing_catalog_refresh_seconds=3600)
    service = LiveService(create_app(settings, queue=queue, clock=clock), settings, queue, clock).start()
    yield service
    service.close()


def chart_bars(page) -> dict:
    return {(g.get_attribute("data-reason"), g.get_attribute("data-event-type")): int(g.get_attribute("data-total"))
            for g in page.css("#billing-chart g")}


def test_the_chart_shows_the_typos_and_a_refresh_after_creating_the_metric_clears_them(browser, live, sandbox, clock, tmp_path):
    headers = {"Authorization": f"Bearer {ADMIN}"}
    assert requests.post(live.url + "/admin/billing/refresh", headers=headers, timeout=30).json()["refreshed"]
    when = clock.iso(-60)
    typos = [track(f"typo-{i}", when, customer="acme", event="transfr", bytes=10, region="eu") for i in range(7)]
    good = [track(f"good-{i}", when, customer="acme", bytes=10, region="eu") for i in range(3)]
    assert live.post(typos + good).json()["accepted"] == 10

    page = Page(browser, live.url)
    page.sign_in(ADMIN)
    page.wait.until(lambda _: page.css('#tabs [data-tab="billing"]') and page.el("tabs").is_displayed(), "the tabs")
    page.css('#tabs [data-tab="billing"]')[0].click()
    page.wait.until(lambda _: chart_bars(page).get(("no_billable_metric", "transfr")) == 7, "the typo bar")
    page.until_text("billing-examples", "no_billable_metric", "transfr", "did you mean 'transfer'")
    page.until_text("billing-catalog", "BILLING_CHECK=warn", "2 metric(s)")
    screenshot(browser, tmp_path, "billing-view-typos.png")

    Api(sandbox).create("/v1/billable-metrics/create", {
        "name": "Transfer (as sent)", "event_type_filter": {"in_values": ["transfr"]},
        "property_filters": [{"name": "bytes", "exists": True}], "aggregation_type": "SUM", "aggregation_key": "bytes"})
    page.el("billing-refresh").click()
    page.until_text("billing-status", "catalog refreshed")
    page.until_text("billing-catalog", "3 metric(s)")
    page.wait.until(lambda _: ("no_billable_metric", "transfr") not in chart_bars(page), "the typo bar to clear")
    page.until_text("billing-resolved", "no_billable_metric · transfr (7)")
    assert "transfr" not in page.el("billing-examples").text
    screenshot(browser, tmp_path, "billing-view-resolved.png")
    wait_until(lambda: {f"typo-{i}" for i in range(7)} <= set(sandbox.state.events), message="the typos delivered (warn)")


def test_the_mapping_preview_says_what_an_event_adds_and_prices_it_for_a_customer(browser, live, clock, tmp_path):
    headers = {"Authorization": f"Bearer {ADMIN}"}
    assert requests.post(live.url + "/admin/billing/refresh", headers=headers, timeout=30).json()["refreshed"]
    page = Page(browser, live.url)
    page.sign_in(ADMIN)
    page.wait.until(lambda _: page.css('#mapping-rows tr[data-name="track events as usage"]'), "the mapping list")
    page.css('#mapping-rows tr[data-name="track events as usage"] button[data-action="edit"]')[0].click()
    event = track("price-1", clock.iso(-60), customer="acme", bytes=5000, region="us-east-1")
    page.type_into("preview-event", json.dumps(event))
    page.until_text("preview-billing", "+5000 bytes on Data transfer (bytes)")
    page.type_into("price-customer", "5e2d1c0b-0000-4000-8000-000000000031")  # the guide's customer
    page.el("price-it").click()
    page.until_text("price-output", "Data transfer: 5000 × 0.01 = 50 (USD (cents))")
    screenshot(browser, tmp_path, "preview-priced.png")
