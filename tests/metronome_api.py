"""A thin client of the sandbox's Metronome API for tests, and the guide's objects made through it."""
from __future__ import annotations

import requests

from conftest import TOKEN

CONTRACT_START = "2026-01-01T00:00:00Z"


class Api:
    def __init__(self, sandbox, token: str = TOKEN):
        self.url = sandbox.url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body=None) -> requests.Response:
        return self.session.request(method, self.url + path, json=body, timeout=10)

    def post(self, path: str, body) -> dict:
        response = self.call("POST", path, body)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json() if response.content else {}

    def get(self, path: str) -> dict:
        response = self.call("GET", path)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json()

    def create(self, path: str, body) -> str:
        return self.post(path, body)["data"]["id"]

    def customer(self, name: str, *aliases: str, rate_card: str | None = None) -> str:
        customer = self.create("/v1/customers", {"name": name, "ingest_aliases": list(aliases)})
        if rate_card:
            self.create("/v1/contracts/create", {"customer_id": customer, "rate_card_id": rate_card,
                                                 "starting_at": CONTRACT_START})
        return customer

    def transfer_metric(self) -> str:
        """The guide's metric: the SUM of `bytes` over `transfer` events, grouped by `region`."""
        return self.create("/v1/billable-metrics/create", {
            "name": "Data transfer", "event_type_filter": {"in_values": ["transfer"]},
            "property_filters": [{"name": "bytes", "exists": True}, {"name": "region", "exists": True}],
            "aggregation_type": "SUM", "aggregation_key": "bytes", "group_keys": [["region"]]})

    def rate_card(self, *rates: dict) -> str:
        card = self.create("/v1/contract-pricing/rate-cards/create", {"name": "Test rates"})
        self.post("/v1/contract-pricing/rate-cards/addRates", {"rate_card_id": card, "rates": [
            {"starting_at": CONTRACT_START, "entitled": True, **rate} for rate in rates]})
        return card

    def usage_product(self, metric: str, name: str = "Data transfer", **fields) -> str:
        return self.create("/v1/contract-pricing/products/create",
                           {"name": name, "type": "USAGE", "billable_metric_id": metric, **fields})

    def draft(self, customer: str) -> dict:
        [invoice] = self.get(f"/v1/customers/{customer}/invoices?status=DRAFT")["data"]
        return invoice

    def search(self, *transaction_ids: str) -> list[dict]:
        return self.post("/v1/events/search", {"transactionIds": list(transaction_ids)})

    def pages(self, path: str, body) -> list[dict]:
        """Every row of a paged POST read, following next_page to the end."""
        rows, cursor = [], None
        while True:
            answer = self.post(path + (f"?next_page={cursor}" if cursor else ""), body)
            rows += answer["data"]
            cursor = answer["next_page"]
            if not cursor:
                return rows
