"""Metronome's read API, for the billing catalog: metrics, customers, events search, previews.

Never called on a request's answer path. Each call has a timeout, follows `next_page` to the end,
and on 429 or 5xx waits (Retry-After or retry-after-ms when given, read as the worker reads them,
else a short doubling backoff) and tries again,
a few times at most; then it raises MetronomeUnavailable, and the caller keeps what it had.
"""
from __future__ import annotations

import time

import requests

from destination.metronome import USER_AGENT, retry_after_seconds


class MetronomeUnavailable(Exception):
    """Metronome could not be reached, or kept answering 429/5xx."""


class MetronomeClient:
    def __init__(self, base_url: str, token: str, timeout_s: float = 10, attempts: int = 3, sleep=time.sleep):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": f"{USER_AGENT} (billing)"})
        self.timeout_s, self.attempts, self.sleep = timeout_s, attempts, sleep

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        delay = 0.5
        for attempt in range(self.attempts):
            try:
                response = self.session.request(method, self.base_url + path, timeout=self.timeout_s, **kwargs)
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__}"
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}"
                delay = retry_after_seconds(response.headers, time.time()) or delay
            if attempt + 1 < self.attempts:
                self.sleep(min(delay, 10))
                delay *= 2
        raise MetronomeUnavailable(f"{method} {path}: {problem}")

    def _json(self, method: str, path: str, **kwargs):
        response = self._call(method, path, **kwargs)
        if response.status_code != 200:
            raise MetronomeUnavailable(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
        return response.json()

    def _all_pages(self, path: str, params: dict) -> list[dict]:
        rows, cursor = [], None
        while True:
            answer = self._json("GET", path, params={**params, **({"next_page": cursor} if cursor else {})})
            rows += answer["data"]
            cursor = answer.get("next_page")
            if not cursor:
                return rows

    def billable_metrics(self) -> list[dict]:
        return self._all_pages("/v1/billable-metrics", {"limit": 100})

    def customer_by_alias(self, alias: str) -> dict | None:
        """The customer whose id or ingest alias this is, or None."""
        found = self._json("GET", "/v1/customers", params={"ingest_alias": alias, "limit": 1})["data"]
        if found:
            return found[0]
        response = self._call("GET", f"/v1/customers/{requests.utils.quote(alias, safe='')}")
        return response.json()["data"] if response.status_code == 200 else None

    def search_events(self, transaction_ids: list[str]) -> list[dict]:
        return self._json("POST", "/v1/events/search", json={"transactionIds": transaction_ids})

    def preview_events(self, customer_id: str, events: list[dict], mode: str = "merge") -> list[dict]:
        return self._json("POST", f"/v1/customers/{requests.utils.quote(customer_id, safe='')}/previewEvents",
                          json={"events": events, "mode": mode})["data"]

