"""Wiring the DTLS transport (``coap.dtls``) into a running node, for the management
server's port and the bootstrap server's: credentials from the settings, limits from
``settings.dtls``, handshake failures into the audit log."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from meadowlark.certificates import server_credentials
from meadowlark.coap.bootstrap_site import NoRegistrations
from meadowlark.coap.dtls import DtlsCredentials, DtlsServer, HandshakeFailure
from meadowlark.coap.endpoint import AiocoapEndpoint
from meadowlark.coap.server import CoapServer
from meadowlark.coap.site import block_size_exponent
from meadowlark.coap.site_context import SiteContext
from meadowlark.config import HostPort, Settings
from meadowlark.runtime import Runtime
from meadowlark.server.transport import TrafficCounter, UplinkHandler

HANDSHAKE_FAILED_EVENT = "device.dtls_handshake_failed"
"""Audit event of a DTLS handshake that did not authenticate (never with a key)."""


def audit_handshake_failures(runtime: Runtime) -> Callable[[HandshakeFailure], None]:
    """The transport's failure hook: one audit row per failed handshake."""

    def record(failure: HandshakeFailure) -> None:
        runtime.activity.audit(
            HANDSHAKE_FAILED_EVENT,
            client_ip=failure.host[:64],
            details={
                "peer": f"{failure.host}:{failure.port}",
                "identity": failure.identity,
                "reason": failure.reason,
                "error": failure.error[:200],
            },
        )

    return record


async def start_dtls(
    settings: Settings,
    runtime: Runtime,
    coap_server: CoapServer,
    psk_keys: Mapping[str, bytes] | None = None,
    *,
    reuse_port: bool = False,
) -> DtlsServer | None:
    """Serve ``settings.coaps`` (None when it is off) on ``coap_server``'s context, so the
    same LwM2M server answers and reaches devices over both. ``psk_keys``: identity ->
    key, consulted at each handshake; by default the device registry's keyring, whose
    changes (a rotated or removed key) end that identity's live sessions."""
    if settings.coaps is None:
        return None
    keys = runtime.psk_keyring if psk_keys is None else psk_keys
    server = _dtls_server(
        settings,
        runtime,
        runtime.lwm2m,
        keys,
        settings.coaps,
        traffic=runtime.lwm2m.traffic,
        reuse_port=reuse_port,
    )
    await server.start(coap_server.context)
    runtime.psk_keyring.on_change(server.close_sessions)
    return server


async def start_bootstrap_dtls(
    settings: Settings,
    runtime: Runtime,
    host: CoapServer | SiteContext,
    *,
    reuse_port: bool = False,
) -> DtlsServer | None:
    """Serve the bootstrap server over DTLS at ``settings.bootstrap_dtls`` (None when it
    is off) on ``host``'s context (whose site is the ``BootstrapSite``): the plain-UDP
    bootstrap server's, or a ``SiteContext`` when bootstrap runs over DTLS only. Handshakes take the
    bootstrap accounts' PSKs (``runtime.bootstrap_keyring``; a changed or removed key
    ends that identity's sessions), and the bootstrap service sends to DTLS peers
    through this port. Failed handshakes are audited as on the management port."""
    if settings.bootstrap_dtls is None:
        return None
    server = _dtls_server(
        settings,
        runtime,
        NoRegistrations(),
        runtime.bootstrap_keyring,
        settings.bootstrap_dtls,
        reuse_port=reuse_port,
    )
    await server.start(host.context)
    runtime.bootstrap_keyring.on_change(server.close_sessions)
    runtime.bootstrap.attach(AiocoapEndpoint(host.context), transport="dtls")
    return server


def _dtls_server(
    settings: Settings,
    runtime: Runtime,
    handler: UplinkHandler,
    keys: Mapping[str, bytes],
    address: HostPort,
    *,
    traffic: TrafficCounter | None = None,
    reuse_port: bool,
) -> DtlsServer:
    credentials = server_credentials(settings)
    limits = settings.dtls
    lwm2m = settings.lwm2m
    return DtlsServer(
        handler,
        DtlsCredentials(
            keys,
            certificate=credentials.certificate,
            private_key=credentials.private_key,
            ca_bundle=credentials.ca_bundle,
        ),
        address.host,
        address.port,
        max_sessions=limits.max_sessions,
        idle_timeout=limits.idle_timeout,
        handshake_timeout=limits.handshake_timeout,
        handshakes_per_second=limits.handshakes_per_address_per_second,
        max_payload=lwm2m.max_payload,
        block_size_exp=block_size_exponent(lwm2m.block_size),
        traffic=traffic,
        on_handshake_failure=audit_handshake_failures(runtime),
        reuse_port=reuse_port,
        handshake_slice=limits.handshake_slice,
    )
