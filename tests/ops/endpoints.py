"""Reading the ops endpoints of a running worker over HTTP, as Prometheus and the kubelet do."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def get(port: int, path: str) -> tuple[int, str]:
    """``(status, body)`` of ``GET http://127.0.0.1:<port><path>``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class Scrape:
    """One ``/metrics`` scrape: ``value(name, **labels)`` sums the samples that match."""

    def __init__(self, text: str) -> None:
        self.samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def value(self, name: str, **labels: str) -> float:
        return sum(
            s.value for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def by(self, name: str, label: str) -> dict[str, float]:
        found: dict[str, float] = {}
        for s in self.samples:
            if s.name == name and s.value:
                found[s.labels[label]] = found.get(s.labels[label], 0.0) + s.value
        return found

    def has(self, name: str, **labels: str) -> bool:
        return any(s.name == name and all(s.labels.get(k) == v for k, v in labels.items()) for s in self.samples)


def scrape(port: int) -> Scrape:
    status, body = get(port, "/metrics")
    assert status == 200, body
    return Scrape(body)


def ops_port(app: Any) -> int:
    """The port an app's ops server listens on."""
    assert app.ops is not None, "build the app with metrics_port set"
    return int(app.ops.port)
