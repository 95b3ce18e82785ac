"""Settings of metrics and logs, and the metric helpers' contracts."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter

from meadowlark.config import HostPort, Settings
from meadowlark.metrics import CountBy, registration_result


@pytest.fixture(autouse=True)
def _no_meadowlark_env(monkeypatch):
    for name in ("MEADOWLARK_METRICS__LISTEN", "MEADOWLARK_LOG_FORMAT", "MEADOWLARK_LOG_JSON"):
        monkeypatch.delenv(name, raising=False)


def test_the_metrics_listener_is_off_by_default_and_parses_an_address(monkeypatch):
    assert Settings().metrics.listen is None
    monkeypatch.setenv("MEADOWLARK_METRICS__LISTEN", "127.0.0.1:9464")
    assert Settings().metrics.listen == HostPort(host="127.0.0.1", port=9464)
    monkeypatch.setenv("MEADOWLARK_METRICS__LISTEN", "off")
    assert Settings().metrics.listen is None
    monkeypatch.setenv("MEADOWLARK_METRICS__LISTEN", "9464")
    with pytest.raises(ValueError, match="host:port"):
        Settings()


@pytest.mark.parametrize(
    ("log_format", "log_json", "json_lines"),
    [("json", False, True), ("console", True, False), (None, True, True)],
)
def test_the_log_format_wins_over_the_older_switch(log_format, log_json, json_lines):
    assert Settings(log_format=log_format, log_json=log_json).log_as_json is json_lines


def test_without_a_format_logs_are_json_unless_stderr_is_a_terminal(monkeypatch):
    class Terminal:
        def isatty(self) -> bool:
            return True

    assert Settings().log_as_json is True  # pytest captures standard error
    monkeypatch.setattr("sys.stderr", Terminal())
    assert Settings().log_as_json is False


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="json"):
        Settings(log_format="xml")


@pytest.mark.parametrize(
    ("code", "result"),
    [((2, 1), "created"), ((4, 3), "forbidden"), ((4, 0), "rejected"), ((5, 3), "unavailable")],
)
def test_registration_results(code, result):
    assert registration_result(*code) == result


def test_a_label_set_is_bound_once_and_counted_under_its_text():
    counter = Counter("probe", "test", ("type", "result"), registry=CollectorRegistry())
    bound = []
    original = counter.labels

    def labels(*values):
        bound.append(values)
        return original(*values)

    counter.labels = labels  # type: ignore[method-assign]
    counts = CountBy(counter)
    for _ in range(3):
        counts.inc("register", (2, 1))
    assert bound == [("register", "(2, 1)")]
    assert original("register", "(2, 1)")._value.get() == 3
