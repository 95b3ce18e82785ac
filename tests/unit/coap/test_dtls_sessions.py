"""The DTLS session table: cap with eviction, timeouts, per-host handshake budget."""

from __future__ import annotations

from meadowlark.coap.dtls import (
    HELLO_MEMORY,
    SessionTable,
    client_random,
    is_client_hello,
    is_record,
    pack_records,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def table(clock: Clock, **limits: float) -> SessionTable[str]:
    values = dict(
        max_sessions=3, idle_timeout=60.0, handshake_timeout=10.0, handshakes_per_second=2.0
    )
    values.update(limits)
    return SessionTable(clock=clock, **values)  # type: ignore[arg-type]


def address(n: int) -> tuple[str, int]:
    return ("192.0.2.1", 40000 + n)


def test_at_the_cap_the_least_recently_used_established_session_goes():
    clock = Clock()
    sessions = table(clock)
    for n in range(3):
        assert sessions.add_handshake(address(n), f"s{n}") == []
        sessions.established(address(n))
        clock.now += 1
    assert sessions.get(address(0)) == "s0"  # used: now the most recent
    assert sessions.add_handshake(address(3), "s3") == ["s1"]
    assert sessions.peek(address(1)) is None
    assert [name for _, name in sessions] == ["s2", "s0", "s3"]


def test_handshaking_sessions_are_not_evicted_a_full_table_refuses():
    clock = Clock()
    sessions = table(clock)
    for n in range(3):
        sessions.add_handshake(address(n), f"s{n}")
    assert sessions.add_handshake(address(3), "s3") is None
    assert len(sessions) == 3
    sessions.established(address(1))
    assert sessions.add_handshake(address(3), "s3") == ["s1"]


def test_a_new_handshake_replaces_the_addresss_session():
    clock = Clock()
    sessions = table(clock)
    sessions.add_handshake(address(0), "old")
    sessions.established(address(0))
    assert sessions.add_handshake(address(0), "new") == ["old"]
    assert sessions.peek(address(0)) == "new" and sessions.is_handshaking(address(0))


def test_overdue_handshakes_and_idle_sessions_expire():
    clock = Clock()
    sessions = table(clock)
    sessions.add_handshake(address(0), "established")
    sessions.established(address(0))
    sessions.add_handshake(address(1), "stuck")
    clock.now += 9.9
    assert sessions.expire() == []
    clock.now += 0.2
    assert sessions.expire() == [(address(1), "stuck", "handshake_timeout")]
    clock.now += 40
    sessions.get(address(0))  # traffic keeps it alive
    clock.now += 59
    assert sessions.expire() == []
    clock.now += 2
    assert sessions.expire() == [(address(0), "established", "idle")]
    assert len(sessions) == 0


def test_the_handshake_budget_is_per_host_and_refills():
    clock = Clock()
    sessions = table(clock, handshakes_per_second=2.0)
    # Two handshakes a second: four ClientHellos (each handshake sends two).
    assert [sessions.allow_handshake("192.0.2.1") for _ in range(5)] == [True] * 4 + [False]
    assert sessions.allow_handshake("192.0.2.2")  # another host has its own budget
    clock.now += 0.25  # a quarter second refills one ClientHello
    assert sessions.allow_handshake("192.0.2.1")
    assert not sessions.allow_handshake("192.0.2.1")
    clock.now += 10
    sessions.expire()  # full budgets are forgotten
    assert [sessions.allow_handshake("192.0.2.1") for _ in range(5)] == [True] * 4 + [False]


def test_record_checks():
    hello = bytes([22, 0xFE, 0xFD, 0, 0]) + bytes(6) + (60).to_bytes(2, "big") + bytes([1])
    hello += bytes(13) + bytes(range(32)) + bytes(20)
    assert is_record(hello) and is_client_hello(hello)
    assert client_random(hello) == bytes(range(32))
    epoch_one = hello[:3] + b"\x00\x01" + hello[5:]
    assert is_record(epoch_one) and not is_client_hello(epoch_one)
    assert not is_record(b"\x40\x01\x00\x00")  # a CoAP message, not DTLS
    assert not is_record(hello[:12])  # shorter than a record header
    assert not is_record(bytes([23, 0x03, 0x03]) + bytes(10))  # TLS, not DTLS


def record(kind: int, size: int) -> bytes:
    return bytes([kind, 0xFE, 0xFD]) + bytes(8) + size.to_bytes(2, "big") + bytes(size)


def test_a_flight_is_packed_into_datagrams_at_record_boundaries():
    small, medium, large = record(22, 100), record(22, 600), record(22, 2000)
    assert pack_records(small + small, 1280) == [small + small]
    assert pack_records(medium + medium + small, 1280) == [medium + medium, small]
    assert pack_records(small + large + small, 1280) == [small, large, small]
    assert pack_records(large, 1280) == [large]
    assert pack_records(b"", 1280) == []


def test_a_sessions_client_hello_is_remembered_against_replays():
    clock = Clock()
    sessions = table(clock)
    random = bytes(range(32))
    sessions.add_handshake(address(0), "s0", random)
    assert sessions.replayed(address(0), random)
    assert not sessions.replayed(address(1), random)  # the cookie binds another address
    assert not sessions.replayed(address(0), bytes(32))
    sessions.remove(address(0))
    assert sessions.replayed(address(0), random)  # the session's end does not forget it
    clock.now += HELLO_MEMORY + 1
    sessions.expire()
    assert not sessions.replayed(address(0), random)
