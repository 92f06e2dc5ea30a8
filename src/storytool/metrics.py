"""Prometheus metrics, one registry per app (tests build many apps in one process).

Services record what they do through :class:`Metrics`; ``GET /metrics`` renders the registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "storytool_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "storytool_http_request_seconds",
            "Time to the first byte of the answer (for streams: to the headers).",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.active_streams = Gauge(
            "storytool_active_streams",
            "Generation streams being written right now.",
            registry=self.registry,
        )
        self.first_delta_seconds = Histogram(
            "storytool_time_to_first_delta_seconds",
            "From accepting a generation to its first streamed delta.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.characters_per_second = Histogram(
            "storytool_characters_per_second",
            "Rate at which a finished generation streamed its story.",
            buckets=(10, 25, 50, 100, 200, 400, 800, 1600, 3200),
            registry=self.registry,
        )
        self.generations = Counter(
            "storytool_generations",
            "Generations that ended, by final status and stop reason.",
            ["status", "stop_reason"],
            registry=self.registry,
        )
        self.optional_fallbacks = Counter(
            "storytool_optional_fallbacks",
            "Stories completed with a fallback for an optional step the model failed (title).",
            ["step"],
            registry=self.registry,
        )
        self.search_seconds = Histogram(
            "storytool_search_seconds",
            "Time of one similar-passage search, embedding included.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.db_pool_checked_out = Gauge(
            "storytool_db_pool_checked_out",
            "Database connections in use (pooled backends only).",
            registry=self.registry,
        )
