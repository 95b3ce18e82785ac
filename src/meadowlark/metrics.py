"""The node's Prometheus metrics: defined once here, so that every layer may count.

Counters and histograms are incremented where things happen (``server/``, ``api/``,
``core/``); gauges of state held in memory (registered and awake devices, pending
batched writes, the database pool, SSE subscribers) are sampled by
``observability.NodeGauges``.

``meadowlark serve --workers N`` runs N processes: the supervisor gives each worker
``PROMETHEUS_MULTIPROC_DIR`` (a folder in the data dir, emptied at start), and
prometheus-client, seeing it when first imported, keeps every value in a memory-mapped
file of that folder. A scrape of any worker then adds up the files of all of them
(``exposition``): counters and histograms of every worker that ever ran, gauges of the
live ones (``livesum``; the supervisor marks a dead worker's files). A single process
keeps its values in memory.

Hot paths call the small wrappers below: a label set's child is looked up once and kept
(``labels()`` validates, locks and builds a key on each call).
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Set (by the supervisor) for worker processes whose metrics a scrape adds up."""
CONTENT_TYPE = CONTENT_TYPE_LATEST

disable_created_metrics()  # no ``*_created`` series: a start time per label set is noise

REGISTRY = CollectorRegistry(auto_describe=True)
"""This process's metrics (not prometheus-client's global registry)."""

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class CountBy:
    """A labelled counter whose children are bound on first use, by raw key.

    ``key`` is any hashable tuple (e.g. ``("register", ResponseCode(2, 1))``); its
    label values are ``str`` of its parts, computed once.
    """

    __slots__ = ("_children", "_counter")

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._children: dict[Hashable, Counter] = {}

    def inc(self, *key: Hashable) -> None:
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._counter.labels(*(str(part) for part in key))
        child.inc()


class TimeBy:
    """A labelled histogram whose children are bound on first use (see ``CountBy``)."""

    __slots__ = ("_children", "_histogram")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._children: dict[Hashable, Histogram] = {}

    def observe(self, seconds: float, *key: Hashable) -> None:
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._histogram.labels(*(str(part) for part in key))
        child.observe(seconds)


def _counter(name: str, documentation: str, labels: Sequence[str]) -> Counter:
    return Counter(name, documentation, labels, registry=REGISTRY)


def _gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
    # livesum: a node's figure is the sum over its live worker processes.
    return Gauge(name, documentation, labels, registry=REGISTRY, multiprocess_mode="livesum")


# --- LwM2M ------------------------------------------------------------------------------------

REGISTRATIONS = CountBy(
    _counter(
        "meadowlark_registrations",
        "LwM2M Register requests by result (created, rejected, forbidden, unavailable).",
        ("result",),
    )
)
UPLINKS = CountBy(
    _counter(
        "meadowlark_coap_uplink_messages",
        "LwM2M requests from devices by type (register, update, deregister, send, notify, "
        "bootstrap_request, bootstrap_pack_request) and result (the CoAP response code, "
        "or undecodable).",
        ("type", "result"),
    )
)
DOWNLINKS = CountBy(
    _counter(
        "meadowlark_coap_downlink_messages",
        "LwM2M requests to devices by type (read, write, execute, observe, ping...) and "
        "result (the device's CoAP response code, timeout, unreachable, invalid_response).",
        ("type", "result"),
    )
)
DOWNLINK_SECONDS = TimeBy(
    Histogram(
        "meadowlark_coap_downlink_duration_seconds",
        "Round trip of LwM2M requests to devices (sent now, not queued), by type.",
        ("type",),
        registry=REGISTRY,
        buckets=LATENCY_BUCKETS,
    )
)
REGISTERED_DEVICES = _gauge(
    "meadowlark_registered_devices", "Registrations held by this node's processes."
)
AWAKE_DEVICES = _gauge(
    "meadowlark_awake_devices", "Queue-mode devices in their awake window (reachable now)."
)
QUEUED_REQUESTS = Gauge(
    "meadowlark_queued_requests",
    "Requests waiting in the store for sleeping devices (the whole deployment's).",
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
BATCHED_WRITES_PENDING = _gauge(
    "meadowlark_batched_writes_pending",
    "Writes buffered in memory for the next batch, by kind (values, contacts, "
    "registrations, event_outbox, monitoring_samples).",
    ("kind",),
)

# --- REST, database, events -----------------------------------------------------------------

HTTP_SECONDS = TimeBy(
    Histogram(
        "meadowlark_http_request_duration_seconds",
        "REST requests by route template (unmatched: no route), method and status class.",
        ("route", "method", "status"),
        registry=REGISTRY,
        buckets=LATENCY_BUCKETS,
    )
)
DB_POOL_CHECKED_OUT = _gauge(
    "meadowlark_db_pool_checked_out", "Database connections in use (checked out of the pool)."
)
DB_POOL_SIZE = _gauge("meadowlark_db_pool_size", "Database connections the pool keeps.")
SSE_SUBSCRIBERS = _gauge(
    "meadowlark_sse_subscribers", "Open Server-Sent Events streams (REST event feeds)."
)
EVENT_DELIVERIES = CountBy(
    _counter(
        "meadowlark_event_handler_deliveries",
        "Outbox rows sent to event handlers' receivers by handler kind and result "
        "(delivered, failed: retried later or given up).",
        ("kind", "result"),
    )
)
EVENT_DELIVERY_LAG = TimeBy(
    Histogram(
        "meadowlark_event_handler_delivery_lag_seconds",
        "From an outbox row's creation to its receiver's acceptance, by handler kind.",
        ("kind",),
        registry=REGISTRY,
        buckets=LAG_BUCKETS,
    )
)


def registration_result(code_class: int, detail: int) -> str:
    """The ``meadowlark_registrations_total`` result of a Register's answer code."""
    if code_class == 2:
        return "created"
    if (code_class, detail) == (4, 3):
        return "forbidden"
    return "rejected" if code_class == 4 else "unavailable"


def prepare_multiprocess_dir(folder: Path) -> None:
    """Empty (or create) the folder of a new ``serve --workers N`` run's value files."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def mark_process_dead(pid: int, folder: Path) -> None:
    """Drop a dead worker's live gauges (its counters and histograms stay counted)."""
    multiprocess.mark_process_dead(pid, str(folder))


def exposition() -> bytes:
    """The text exposition of this node: every worker's values with multiprocess files,
    else this process's."""
    folder = os.environ.get(MULTIPROC_ENV)
    if not folder:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    return generate_latest(registry)
