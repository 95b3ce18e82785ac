"""How the simulator's DTLS client cuts what mbedtls produced into datagrams."""

from __future__ import annotations

from meadowlark.simulator.dtls import DATAGRAM_LIMIT, DtlsCoapEndpoint, PskCredentials


class _Outgoing:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def peek_outgoing(self, amount: int) -> bytes:
        return self.data[:amount]

    def consume_outgoing(self, amount: int) -> None:
        self.data = self.data[amount:]


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def sendto(self, data: bytes, address: object) -> None:
        self.sent.append(data)


def record(size: int, marker: int) -> bytes:
    """A DTLS record header (13 bytes, the length last) and ``size`` bytes of body."""
    return bytes([22, 0xFE, 0xFD]) + bytes(8) + size.to_bytes(2, "big") + bytes([marker]) * size


def flushed(*records: bytes) -> list[bytes]:
    endpoint = DtlsCoapEndpoint(
        lambda _: None, server=("127.0.0.1", 5684), credentials=PskCredentials("id", b"key")
    )
    transport = _Transport()
    endpoint._transport = transport  # type: ignore[assignment]
    endpoint._buffer = _Outgoing(b"".join(records))  # type: ignore[assignment]
    endpoint._flush()
    return transport.sent


def test_a_flight_is_cut_at_record_boundaries_within_the_limit() -> None:
    records = [record(500, n) for n in range(5)]  # 513 bytes each
    sent = flushed(*records)
    assert [len(datagram) for datagram in sent] == [1026, 1026, 513]
    assert b"".join(sent) == b"".join(records)
    assert all(len(datagram) <= DATAGRAM_LIMIT for datagram in sent)


def test_small_flights_and_oversized_records_go_whole() -> None:
    assert len(flushed(record(40, 1), record(60, 2))) == 1
    big = record(2000, 3)
    assert flushed(record(10, 1), big, record(10, 2)) == [record(10, 1), big, record(10, 2)]
