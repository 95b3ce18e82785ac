"""One settings tree for the whole process, read from ``MEADOWLARK_*`` env vars and TOML.

The flat names (``MEADOWLARK_HTTP``, ``MEADOWLARK_COAP``, ``MEADOWLARK_DATA_DIR``,
``MEADOWLARK_DATABASE_URL``, ``MEADOWLARK_TOKEN_LIFETIME``, ``MEADOWLARK_ADMIN_PASSWORD``,
``MEADOWLARK_SIGNUP``) are a contract with deployments and must not be renamed. Nested
sections use a double underscore: ``MEADOWLARK_RATE_LIMITS__LOGIN_FAILURES_PER_IP=20``.
"""

from __future__ import annotations

import os
import secrets
import sys
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

PLACEHOLDER_SECRETS = frozenset({"changethis", "changeme", "secret", "password", "admin", ""})
CONFIG_FILE_ENV = "MEADOWLARK_CONFIG"


class HostPort(BaseModel):
    """A ``host:port`` listen address (IPv6 hosts in brackets: ``[::1]:5683``)."""

    host: str
    port: int = Field(ge=0, le=65535)

    @classmethod
    def parse(cls, text: str) -> HostPort:
        host, sep, port = text.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {text!r}")
        return cls(host=host.strip("[]"), port=int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _host_port(value: Any) -> Any:
    return HostPort.parse(value) if isinstance(value, str) else value


def _optional_host_port(value: Any) -> Any:
    """``off`` (or an empty value) disables the listener."""
    if isinstance(value, str) and value.strip().lower() in ("", "off", "none", "false"):
        return None
    return _host_port(value)


class RateLimits(BaseModel):
    """Login throttling: failed attempts allowed per window before 429."""

    login_failures_per_account: int = Field(default=5, ge=1)
    """Failed logins for one account within the window before it is throttled."""
    login_failures_per_ip: int = Field(default=30, ge=1)
    """Failed logins from one client address within the window before it is throttled."""
    login_window_seconds: int = Field(default=300, ge=1)
    """Length of the sliding window for both counters."""


class TokenExchange(BaseModel):
    """RFC 8693 token exchange: trust identity tokens from one external issuer."""

    issuer: str | None = None
    """Expected ``iss`` of subject tokens; exchange is off while unset."""
    audience: str | None = None
    """Expected ``aud``, if the issuer sets one."""
    shared_key: SecretStr | None = None
    """HMAC key for HS256 subject tokens."""
    jwks_file: Path | None = None
    """A JWKS document (JSON file) with the issuer's public keys (RS256/ES256)."""
    jwks_url: str | None = None
    """URL of the issuer's JWKS, fetched and cached by PyJWT's client."""
    subject_claim: str = "preferred_username"
    """Claim naming the local user login the external identity maps to."""


class Lwm2mSettings(BaseModel):
    """The LwM2M server (``MEADOWLARK_LWM2M__REQUEST_TIMEOUT=15``...)."""

    default_domain: str = "/root/"
    """Domain that devices registering for the first time are created in."""
    request_timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for a device's answer to a request (read, write...)."""
    supported_versions: tuple[str, ...] = ("1.0", "1.1", "1.2")
    """LwM2M versions accepted at Register; others get 4.12 Precondition Failed."""
    lifetime_grace: float = Field(default=30.0, ge=0)
    """Seconds after a registration's lifetime before it is removed."""
    awake_window: float = Field(default=93.0, gt=0)
    """Seconds a queue-mode device stays reachable after its last message
    (CoAP MAX_TRANSMIT_WAIT, Transport 1.1 §6.5 "Queue Mode")."""
    max_registrations_per_address_per_minute: int | None = Field(default=None, ge=1)
    """Registers accepted from one IP address per minute, more get 5.03 with Max-Age;
    unset (the default): no per-address limit. Many fleets reach the server from a few
    carrier NAT addresses, and after an outage they all register again at once; set it
    only where each address is one device (or a small site) and a flood is an attack."""
    max_pending_uplinks: int = Field(default=2048, ge=1)
    """Register and Update requests in process at once (admitted, not yet answered:
    waiting for the store); more get 5.03 Service Unavailable (load shedding)."""
    overload_max_age_min: int = Field(default=5, ge=0)
    """Smallest Max-Age (seconds) of that 5.03; each answer draws one at random between
    this and ``overload_max_age_max``, so that retries do not come back in one wave."""
    overload_max_age_max: int = Field(default=30, ge=0)
    """Largest Max-Age (seconds) of the overload 5.03."""
    queued_request_ttl: float = Field(default=86400.0, gt=0)
    """Seconds a request for a sleeping device waits in the queue before it expires."""
    max_payload: int = Field(default=65536, ge=1024)
    """Largest request body accepted from a device, Block1-reassembled (else 4.13)."""
    block_size: int = 1024
    """Preferred block size (16..1024, a power of two) for block-wise transfers."""
    value_flush_interval: float = Field(default=0.1, gt=0)
    """Seconds between batched writes of notified values and contact times."""

    @model_validator(mode="after")
    def _overload_window(self) -> Lwm2mSettings:
        if self.overload_max_age_min > self.overload_max_age_max:
            raise ValueError("overload_max_age_min must not exceed overload_max_age_max")
        return self

    @field_validator("block_size")
    @classmethod
    def _power_of_two_block(cls, value: int) -> int:
        if value not in (16, 32, 64, 128, 256, 512, 1024):
            raise ValueError("block_size must be a power of two from 16 to 1024")
        return value


class FirmwareSettings(BaseModel):
    """Firmware images (``MEADOWLARK_FIRMWARE__MAX_BYTES=...``)."""

    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """Largest firmware image accepted by ``PUT resources/{id}/data`` (else 413)."""
    url_lifetime: int = Field(default=3600, ge=10, le=86400 * 7)
    """Seconds a download URL from ``POST resources/{id}/downloadUrl`` stays valid."""
    coap_url: str | None = None
    """Base of the CoAP download URLs given to devices, e.g. ``coap://lwm2m.example.com:5683``;
    default: the CoAP listen address (a wildcard host becomes 127.0.0.1)."""
    http_url: str | None = None
    """Base of the HTTP(S) download URLs given to devices, e.g. ``https://dm.example.com``;
    default: the REST listen address (a wildcard host becomes 127.0.0.1)."""


class TaskSettings(BaseModel):
    """Task execution and report callbacks (``MEADOWLARK_TASKS__...``)."""

    workers: int = Field(default=16, ge=1, le=1024)
    """Devices served at the same time (each runs its due tasks in order)."""
    registration_reads: str = "/3/0,/5/0"
    """Paths read when a device (re-)registers, unless the setting ``registrationRead``
    of its domain, group or device says otherwise (``off``: none)."""
    callback_timeout: float = Field(default=5.0, gt=0)
    """Seconds a callback receiver has to answer."""
    callback_retry_initial: float = Field(default=1.0, gt=0)
    """Seconds before the first retry of a failed callback; doubled on each retry."""
    callback_retry_max: float = Field(default=300.0, gt=0)
    """Longest wait between two retries of a callback."""
    callback_max_attempts: int = Field(default=20, ge=1)
    """Attempts before a callback delivery is given up."""
    callback_poll_interval: float = Field(default=1.0, gt=0)
    """Seconds between looks for due callback retries."""


class AlertSettings(BaseModel):
    """Alert rules (``MEADOWLARK_ALERTS__...``)."""

    sweep_interval: float = Field(default=30.0, gt=0)
    """Seconds between two no-contact sweeps (run by one node of a deployment)."""


class EventHandlerSettings(BaseModel):
    """Delivery of device events to handlers (``MEADOWLARK_EVENT_HANDLERS__...``)."""

    request_timeout: float = Field(default=10.0, gt=0)
    """Seconds a receiver (webhook, Kafka, MQTT broker) has to take one event."""
    retry_initial: float = Field(default=0.5, gt=0)
    """Seconds before the first retry of a failed delivery; doubled on each retry."""
    retry_max: float = Field(default=30.0, gt=0)
    """Longest wait between two retries: a receiver that comes back gets its backlog
    within about this long."""
    give_up_after: float = Field(default=3600.0, gt=0)
    """Seconds an event is retried before it counts as a failed delivery (5 in a row
    disable the handler)."""
    concurrency: int = Field(default=32, ge=1, le=1024)
    """Deliveries in flight at once per worker process (one per device and handler)."""
    poll_interval: float = Field(default=0.5, gt=0)
    """Seconds between looks at the outbox for rows other workers wrote or retries due."""
    flush_interval: float = Field(default=0.05, gt=0)
    """Seconds events wait in memory before their batch is written to the outbox."""
    block_private_targets: bool = False
    """Refuse handler URIs on loopback and private networks (SSRF); link-local ones
    (cloud metadata services) are always refused."""


class SmsSettings(BaseModel):
    """How MT SMS reach SIMs: ``log`` (default: logged, not sent) or ``smpp`` (an SMSC)."""

    gateway: Literal["log", "smpp"] = "log"
    host: str = "127.0.0.1"
    """The SMSC's host (``smpp``)."""
    port: int = Field(default=2775, ge=1, le=65535)
    system_id: str = Field(default="", max_length=15)
    """The ESME's SMPP login."""
    password: SecretStr | None = None
    """The ESME's SMPP password (at most 8 characters in SMPP 3.4); never logged."""
    system_type: str = Field(default="", max_length=12)
    source_addr: str = Field(default="", max_length=20)
    """Sender address when a message names none."""
    registered_delivery: bool = True
    """Ask the SMSC for delivery receipts (recorded as connectivity events)."""
    connect_timeout: float = Field(default=10.0, gt=0)
    """Seconds to bind before a message counts as not accepted."""

    @model_validator(mode="after")
    def _smpp_needs_a_login(self) -> SmsSettings:
        if self.gateway == "smpp" and not self.system_id:
            raise ValueError("MEADOWLARK_SMS__SYSTEM_ID is required with the smpp gateway")
        return self


class ClusterSettings(BaseModel):
    """Several worker processes and nodes (``MEADOWLARK_CLUSTER__SIGNALS=postgres``...)."""

    signals: Literal["auto", "postgres", "redis", "local", "off"] = "auto"
    """How nodes reach each other (downlink routing, SSE events, cache invalidation).
    ``auto``: Redis when ``redis_url`` is set, else PostgreSQL LISTEN/NOTIFY when the
    store is PostgreSQL, else off (one process); ``serve --workers N`` on SQLite uses
    ``local`` (Unix-domain sockets in the data dir)."""
    redis_url: str | None = None
    """Redis/Valkey for pub/sub between nodes, e.g. ``redis://redis:6379/0``."""
    lease_ttl: float = Field(default=15.0, ge=1.0)
    """Seconds a node holds a singleton duty on SQLite before it must renew it."""


class MonitoringSettings(BaseModel):
    """Monitoring time series (``MEADOWLARK_MONITORING__RETENTION_DAYS=30``...)."""

    retention_days: int = Field(default=30, ge=1, le=3650)
    """Days samples are kept; older ones are dropped (PostgreSQL: whole daily partitions;
    SQLite: deleted in batches)."""
    batch_size: int = Field(default=2000, ge=1, le=100_000)
    """Samples written per INSERT; a fuller buffer is flushed at once."""
    flush_interval: float = Field(default=0.2, gt=0)
    """Seconds between batched writes of samples."""
    max_buffered: int = Field(default=200_000, ge=1000)
    """Samples held in memory while the store is slow; beyond that the oldest are dropped
    (and logged) rather than letting memory grow."""
    retention_interval: float = Field(default=3600.0, gt=0)
    """Seconds between runs of the retention (and partition) job."""
    delete_batch: int = Field(default=5000, ge=1)
    """Rows per DELETE when SQLite drops expired samples."""
    partitions_ahead: int = Field(default=3, ge=1, le=60)
    """Daily partitions created ahead of today on PostgreSQL."""
    max_periodic_reads_per_second: float = Field(default=50.0, gt=0)
    """Upper bound on the Reads the server sends for periodic monitoring, all devices
    together; configurations whose devices need more are read less often."""
    min_read_interval: int = Field(default=10, ge=1)
    """Shortest ``readInterval`` (seconds) a named monitoring configuration may ask for."""


class TlsSettings(BaseModel):
    """Certificates of the secure device transports: DTLS with X.509 and CoAP over TLS
    (``MEADOWLARK_TLS__CERTIFICATE=/etc/meadowlark/server.pem``...)."""

    certificate: Path | None = None
    """PEM file with the server certificate (and its chain); when unset, a self-signed
    ECDSA P-256 certificate is generated once into ``<data dir>/tls/``."""
    private_key: Path | None = None
    """PEM file with the private key of ``certificate`` (required when it is set)."""
    ca_bundle: Path | None = None
    """PEM file with the CAs that sign device client certificates (X.509 devices); when
    unset, no client certificate is accepted."""
    server_name: str = "meadowlark"
    """Common name (and DNS name) of the generated self-signed certificate."""

    @model_validator(mode="after")
    def _key_with_certificate(self) -> TlsSettings:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError(
                "MEADOWLARK_TLS__CERTIFICATE and MEADOWLARK_TLS__PRIVATE_KEY go together"
            )
        return self


class DtlsSettings(BaseModel):
    """Limits of the DTLS (``coaps://``) device transport (``MEADOWLARK_DTLS__...``)."""

    max_sessions: int = Field(default=20_000, ge=1)
    """Live sessions (handshaking or established) one process keeps; at the cap, the
    least recently used established session is dropped (its device re-handshakes).
    A session takes about 60 KiB (mostly Mbed TLS's record buffers): 20 000, ~1.2 GiB."""
    idle_timeout: float = Field(default=86_400.0, gt=0)
    """Seconds without a record after which an established session is dropped; a device
    sleeping longer re-handshakes (its registration stays)."""
    handshake_timeout: float = Field(default=30.0, gt=0)
    """Seconds a handshake may take from its verified ClientHello to its Finished."""
    handshakes_per_address_per_second: float = Field(default=20.0, gt=0)
    """Handshakes one IP address may start per second (a burst of as many is allowed);
    ClientHellos beyond it are dropped before any cryptography (flood throttle)."""
    handshake_slice: float = Field(default=0.001, gt=0)
    """Seconds of handshake cryptography (ECDHE, signatures, certificate checks) run at a
    time before the event loop serves other work (REST, established sessions); a large
    value runs every pending handshake step at once."""


class MetricsSettings(BaseModel):
    """Prometheus ``/metrics`` (``MEADOWLARK_METRICS__LISTEN=127.0.0.1:9464``...)."""

    listen: Annotated[HostPort | None, NoDecode] = None
    """Serve ``/metrics`` without authentication on this separate address (and not on
    the REST port). Unset (the default): on the REST port, for callers holding the
    ``admin:GET /metrics`` permission in the root domain."""
    sample_interval: float = Field(default=5.0, gt=0)
    """Seconds between samples of the in-memory gauges (registered devices, queues...)
    in each worker process."""

    _parse_listen = field_validator("listen", mode="before")(_optional_host_port)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MEADOWLARK_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    http: Annotated[HostPort, NoDecode] = HostPort.parse("127.0.0.1:8087")
    """Address of the REST server."""
    coap: Annotated[HostPort, NoDecode] = HostPort.parse("0.0.0.0:5683")  # noqa: S104 - devices connect from anywhere
    """Address of the CoAP (LwM2M) server."""
    coaps: Annotated[HostPort | None, NoDecode] = HostPort.parse("0.0.0.0:5684")  # noqa: S104 - devices connect from anywhere
    """Address of the DTLS (``coaps://``) LwM2M server; ``off`` disables it."""
    coap_tcp: Annotated[HostPort | None, NoDecode] = HostPort.parse("0.0.0.0:5683")  # noqa: S104
    """Address of CoAP over TCP (RFC 8323, LwM2M binding ``T``); ``off`` disables it."""
    coap_tls: Annotated[HostPort | None, NoDecode] = HostPort.parse("0.0.0.0:5684")  # noqa: S104
    """Address of CoAP over TLS (certificates: ``tls``); ``off`` disables it."""
    bootstrap: Annotated[HostPort | None, NoDecode] = HostPort.parse("0.0.0.0:5783")  # noqa: S104 - devices connect from anywhere
    """Address of the LwM2M Bootstrap server (plain CoAP); ``off`` disables it."""
    bootstrap_dtls: Annotated[HostPort | None, NoDecode] = HostPort.parse("0.0.0.0:5784")  # noqa: S104 - devices connect from anywhere
    """Address of the LwM2M Bootstrap server over DTLS (``coaps://``; bootstrap accounts
    with a PSK); ``off`` disables it."""
    data_dir: Path = Path("./meadowlark-data")
    """Folder for the embedded database, the generated secret key and other state."""
    database_url: str | None = None
    """SQLAlchemy async URL; default: SQLite file ``meadowlark.db`` in the data dir."""
    token_lifetime: int = Field(default=300, ge=1, le=86400 * 7)
    """Lifetime of access tokens in seconds, the same for every user type."""
    refresh_token_lifetime: int = Field(default=86400, ge=60)
    """Lifetime of refresh tokens in seconds."""
    admin_password: SecretStr | None = None
    """Password of the first administrator (login ``admin``); generated once if unset."""
    signup: bool = True
    """Whether people may create free Developer accounts themselves."""
    dev: bool = False
    """Development mode: allows placeholder secrets."""
    secret_key: SecretStr | None = None
    """Key that signs tokens; generated once into the data dir if unset."""
    psk_key: SecretStr | None = None
    """Key that device PSKs are encrypted with at rest (AES-256-GCM, key derived by
    HKDF-SHA256). Unset: derived from the secret key (``MEADOWLARK_SECRET_KEY`` or the
    generated one), with its own purpose label. Set it to change the token signing key
    without touching stored PSKs. Changing the key in use makes the stored PSKs
    unreadable (those devices can no longer authenticate): ``meadowlark doctor`` counts
    them."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Largest request body the REST server accepts."""
    log_level: str = "info"
    log_format: Literal["json", "console"] | None = None
    """``json``: one JSON object per line; ``console``: human-readable lines. Unset: JSON
    unless standard error is a terminal (``log_json`` true forces JSON)."""
    log_json: bool = False
    """Log as JSON lines (the older switch; ``log_format`` says more)."""
    rate_limits: RateLimits = RateLimits()
    token_exchange: TokenExchange = TokenExchange()
    lwm2m: Lwm2mSettings = Lwm2mSettings()
    firmware: FirmwareSettings = FirmwareSettings()
    tasks: TaskSettings = TaskSettings()
    alerts: AlertSettings = AlertSettings()
    sms: SmsSettings = SmsSettings()
    event_handlers: EventHandlerSettings = EventHandlerSettings()
    cluster: ClusterSettings = ClusterSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    tls: TlsSettings = TlsSettings()
    dtls: DtlsSettings = DtlsSettings()
    metrics: MetricsSettings = MetricsSettings()

    _parse_http = field_validator("http", "coap", mode="before")(_host_port)
    _parse_coaps = field_validator("coaps", "bootstrap_dtls", mode="before")(_optional_host_port)
    _parse_streams = field_validator("coap_tcp", "coap_tls", mode="before")(_optional_host_port)

    @field_validator("bootstrap", mode="before")
    @classmethod
    def _bootstrap_address(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "off":
            return None
        return _host_port(value)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError(f"unknown log level {value!r}")
        return value.lower()

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.dev:
            return self
        for name in ("secret_key", "psk_key", "admin_password"):
            value: SecretStr | None = getattr(self, name)
            if value is not None and value.get_secret_value().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(
                    f"MEADOWLARK_{name.upper()} is a placeholder; set a real value "
                    "(or MEADOWLARK_DEV=true for development)"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def log_as_json(self) -> bool:
        """Whether log lines are JSON (see ``log_format``)."""
        if self.log_format is not None:
            return self.log_format == "json"
        return self.log_json or not sys.stderr.isatty()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'meadowlark.db').resolve()}"

    @cached_property
    def signing_key(self) -> str:
        """The token signing key: configured, or generated once and kept in the data dir."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        key_file = self.data_dir / "secret_key"
        if key_file.exists():
            return key_file.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key
