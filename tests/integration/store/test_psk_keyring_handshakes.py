"""The keyring as python-mbedtls's PSK store: handshakes (TLS-PSK in memory; DTLS asks
the store the same way) succeed with the registered key only, fail closed when the
stored key does not open, and follow a rotation at its commit."""

from __future__ import annotations

import asyncio

import pytest

from meadowlark.auth import permissions as catalog
from meadowlark.auth.principal import Principal
from meadowlark.core import devices
from meadowlark.core.secret_box import PSK_PURPOSE, SecretBox, derive_key
from meadowlark.store.db import Database
from meadowlark.store.migrate import upgrade_to_head
from meadowlark.store.models import Domain
from meadowlark.store.psk_keyring import PskKeyring

tls = pytest.importorskip("mbedtls.tls")
TLSError = pytest.importorskip("mbedtls.exceptions").TLSError

SYSTEM = Principal(
    user_id="system",
    login="system",
    domain_id="/root/",
    account_type="admin",
    permissions=catalog.ALL,
    via="test",
)
BOX = SecretBox(derive_key("handshake-test-secret-" + "h" * 30, PSK_PURPOSE))
CIPHERS = ["TLS-PSK-WITH-AES-128-CCM-8"]  # the LwM2M mandatory PSK suite


def handshake(store, identity: str, key: bytes) -> None:
    """A client with ``identity``/``key`` against a server asking ``store``; raises
    ``TLSError`` when the server refuses."""
    server = tls.ServerContext(
        tls.TLSConfiguration(
            pre_shared_key_store=store, validate_certificates=False, ciphers=CIPHERS
        )
    ).wrap_buffers()
    client = tls.ClientContext(
        tls.TLSConfiguration(
            pre_shared_key=(identity, key), validate_certificates=False, ciphers=CIPHERS
        )
    ).wrap_buffers(None)
    over = tls.HandshakeStep.HANDSHAKE_OVER
    for _ in range(20):
        for side, peer in ((client, server), (server, client)):
            if side._handshake_state is not over:
                try:
                    side.do_handshake()
                except (tls.WantReadError, tls.WantWriteError):
                    pass
            data = side.peek_outgoing(16384)
            if data:
                side.consume_outgoing(len(data))
                peer.receive_from_network(data)
        if client._handshake_state is over and server._handshake_state is over:
            return
    raise AssertionError("handshake did not finish")


def test_handshakes_against_the_keyring(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"

    async def main() -> None:
        db = Database(url)
        try:
            await upgrade_to_head(db.engine)
            async with db.session() as session:
                session.add(Domain(id="/root/", customer_id="c", organization_id="o"))
                await session.commit()
                await devices.create_device(
                    session,
                    SYSTEM,
                    devices.NewDevice(
                        endpoint_name="hs-1",
                        dtls_identity="hs-identity",
                        dtls_psk={"HexadecimalPsk": "00112233445566778899aabbccddeeff"},
                    ),
                    psk_box=BOX,
                )
                await session.commit()
            keyring = PskKeyring(db, BOX)
            await keyring.start()
            dropped: list[str] = []
            keyring.on_change(dropped.append)
            try:
                key = bytes.fromhex("00112233445566778899aabbccddeeff")
                handshake(keyring, "hs-identity", key)
                with pytest.raises(TLSError):
                    handshake(keyring, "hs-identity", b"\x00" * 16)
                with pytest.raises(TLSError):
                    handshake(keyring, "someone-else", key)

                async with db.session() as session:
                    await devices.update_device(
                        session,
                        SYSTEM,
                        "hs-1",
                        devices.DeviceChanges(dtls_psk={"PlainTextPsk": "rotated-key-0001"}),
                        psk_box=BOX,
                    )
                    await session.commit()
                assert dropped == ["hs-identity"]  # the transport ends the old sessions
                handshake(keyring, "hs-identity", b"rotated-key-0001")
                with pytest.raises(TLSError):
                    handshake(keyring, "hs-identity", key)
            finally:
                await keyring.stop()

            locked = PskKeyring(db, SecretBox(derive_key("another-server-key", PSK_PURPOSE)))
            await locked.load()
            with pytest.raises(TLSError):  # fails closed: no key, no session
                handshake(locked, "hs-identity", b"rotated-key-0001")
        finally:
            await db.dispose()

    asyncio.run(main())
