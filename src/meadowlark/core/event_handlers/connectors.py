"""Senders of one handler's events: webhook (``http11``: h11 on asyncio streams), Kafka
(aiokafka), MQTT (aiomqtt).

Every event is signed the way task callbacks are (``core.tasks.callbacks.signature``):
HMAC-SHA256 with the handler's signing secret over ``"<timestamp>." + body``, sent as
``X-Meadowlark-Signature: sha256=<hex>`` with ``X-Meadowlark-Timestamp`` (HTTP headers,
Kafka record headers, MQTT 5 user properties). ``DeliveryFailed.retryable`` says whether
the event may be tried again (network errors, timeouts, 408/429/5xx) or the receiver
refused this event for good (another 4xx).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from meadowlark.core.errors import InvalidInput
from meadowlark.core.event_handlers.http11 import Http11Pool, HttpError
from meadowlark.core.event_handlers.rules import (
    KAFKA,
    MQTT,
    Event,
    check_bootstrap,
    check_target_address,
    parse_properties,
    render_body,
)
from meadowlark.core.tasks.callbacks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
)

RETRYABLE_STATUSES = frozenset({408, 425, 429})


class DeliveryFailed(Exception):
    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message[:500]
        self.retryable = retryable


class Connector(Protocol):
    async def send(self, event: Event, delivery_id: str) -> None: ...

    async def close(self) -> None: ...


def signed_headers(secret: str, body: bytes, delivery_id: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        DELIVERY_HEADER: delivery_id,
    }


async def check_resolved_target(host: str) -> None:
    """With ``block_private_targets``: the names a host resolves to are public too."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None)
    except OSError as exc:
        raise DeliveryFailed(f"cannot resolve {host}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        try:
            check_target_address(str(address), block_private=True)
        except InvalidInput as exc:
            raise DeliveryFailed(f"{host}: {exc.message}", retryable=False) from None


class WebhookConnector:
    def __init__(
        self,
        config: Mapping[str, Any],
        secret: str,
        client: Http11Pool,
        *,
        block_private: bool,
    ) -> None:
        self._config = config
        self._secret = secret
        self._client = client
        self._block_private = block_private
        self._static_headers = dict(config.get("additionalHeaders") or {})
        auth = config.get("auth")
        if auth:
            if auth["type"] == "basic":
                pair = f"{auth['user']}:{auth['password']}".encode()
                self._static_headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
            elif auth["type"] == "token":
                self._static_headers["Authorization"] = f"Bearer {auth['token']}"
            else:
                self._static_headers["Authorization"] = auth["value"]

    async def send(self, event: Event, delivery_id: str) -> None:
        body, content_type = render_body(self._config, event)
        uri = self._config["uri"]
        if self._block_private:
            await check_resolved_target(urlsplit(uri).hostname or "")
        headers = {
            "Content-Type": content_type,
            **self._static_headers,
            **signed_headers(self._secret, body, delivery_id),
        }
        try:
            status = await self._client.request(self._config["method"].upper(), uri, headers, body)
        except HttpError as exc:
            raise DeliveryFailed(str(exc)) from None
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in RETRYABLE_STATUSES
        raise DeliveryFailed(f"answered {status}", retryable=retryable)

    async def close(self) -> None:
        """The HTTP client is shared by every webhook: nothing of its own to close."""


def _kafka_producer_factory(**options: Any) -> Any:
    from aiokafka import AIOKafkaProducer

    return AIOKafkaProducer(**options)


kafka_producer_factory: Callable[..., Any] = _kafka_producer_factory
"""Makes the producer (``AIOKafkaProducer``'s keyword arguments): the seam tests replace."""


def kafka_options(properties_text: str, timeout: float) -> dict[str, Any]:
    """``AIOKafkaProducer`` options from a handler's ``.properties``."""
    properties = parse_properties(properties_text)
    options: dict[str, Any] = {
        "bootstrap_servers": check_bootstrap(properties.get("bootstrap.servers")),
        "request_timeout_ms": int(properties.get("request.timeout.ms") or timeout * 1000),
        "acks": _acks(properties.get("acks", "all")),
    }
    if "client.id" in properties:
        options["client_id"] = properties["client.id"]
    if "compression.type" in properties:
        options["compression_type"] = properties["compression.type"]
    protocol = properties.get("security.protocol", "PLAINTEXT").upper()
    options["security_protocol"] = protocol
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context()
    if protocol.startswith("SASL"):
        options["sasl_mechanism"] = properties.get("sasl.mechanism", "PLAIN")
        options["sasl_plain_username"] = properties.get("sasl.username")
        options["sasl_plain_password"] = properties.get("sasl.password")
    return options


def _acks(text: str) -> int | str:
    return "all" if text in ("all", "-1") else int(text) if text in ("0", "1") else "all"


class KafkaConnector:
    """One producer per handler, started on first use and again after a failure."""

    def __init__(self, config: Mapping[str, Any], secret: str, timeout: float) -> None:
        self._config = config
        self._secret = secret
        self._timeout = timeout
        self._producer: Any = None
        self._lock = asyncio.Lock()

    async def _started(self) -> Any:
        async with self._lock:
            if self._producer is None:
                producer = kafka_producer_factory(
                    **kafka_options(self._config["value"], self._timeout)
                )
                try:
                    await asyncio.wait_for(producer.start(), self._timeout)
                except BaseException:
                    await _quietly(producer.stop())
                    raise
                self._producer = producer
            return self._producer

    async def send(self, event: Event, delivery_id: str) -> None:
        from aiokafka.errors import KafkaError

        body, _content_type = render_body(self._config, event)
        headers = {
            **self._config.get("headers", {}),
            **signed_headers(self._secret, body, delivery_id),
        }
        try:
            producer = await self._started()
            await asyncio.wait_for(
                producer.send_and_wait(
                    self._config["topic"],
                    value=body,
                    key=str(event.get("endpointName") or "").encode(),
                    headers=[(name, value.encode()) for name, value in headers.items()],
                ),
                self._timeout,
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            await self.close()
            raise DeliveryFailed(f"kafka: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _quietly(producer.stop())


_TOPIC_UNSAFE = re.compile(r"[#+\x00]")


def mqtt_topic(prefix: str, event: Event) -> str:
    """``<prefix>/<domain path>/<endpoint>`` (wildcard characters replaced by ``_``)."""
    domain = str(event.get("domainId") or "").strip("/")
    endpoint = _TOPIC_UNSAFE.sub("_", str(event.get("endpointName") or "-")) or "-"
    return "/".join(part for part in (prefix, _TOPIC_UNSAFE.sub("_", domain), endpoint) if part)


class MqttConnector:
    """One MQTT 5 connection per handler, opened on first use and again after a failure."""

    def __init__(self, config: Mapping[str, Any], secret: str, timeout: float) -> None:
        self._config = config
        self._secret = secret
        self._timeout = timeout
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _connected(self) -> Any:
        import aiomqtt

        async with self._lock:
            if self._client is None:
                parts = urlsplit(self._config["uri"])
                secure = parts.scheme.lower() == "mqtts"
                client = aiomqtt.Client(
                    parts.hostname or "",
                    parts.port or (8883 if secure else 1883),
                    username=self._config.get("username"),
                    password=self._config.get("password"),
                    identifier=f"meadowlark-{uuid.uuid4().hex[:12]}",
                    protocol=aiomqtt.ProtocolVersion.V5,
                    timeout=self._timeout,
                    tls_context=ssl.create_default_context() if secure else None,
                )
                await asyncio.wait_for(client.__aenter__(), self._timeout)
                self._client = client
            return self._client

    async def send(self, event: Event, delivery_id: str) -> None:
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        body, content_type = render_body(self._config, event)
        properties = Properties(PacketTypes.PUBLISH)
        properties.ContentType = content_type
        properties.UserProperty = list(signed_headers(self._secret, body, delivery_id).items())
        try:
            client = await self._connected()
            await client.publish(
                mqtt_topic(self._config["topicPrefix"], event),
                body,
                qos=self._config.get("qos", 1),
                properties=properties,
                timeout=self._timeout,
            )
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            await self.close()
            raise DeliveryFailed(f"mqtt: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _quietly(client.__aexit__(None, None, None))


async def _quietly(closing: Any) -> None:
    try:
        await closing
    except Exception:  # noqa: S110 - closing a broken connection: nothing left to do
        pass


def make_connector(
    kind: str,
    config: Mapping[str, Any],
    secret: str,
    *,
    client: Http11Pool,
    timeout: float,
    block_private: bool,
) -> Connector:
    if kind == KAFKA:
        return KafkaConnector(config, secret, timeout)
    if kind == MQTT:
        return MqttConnector(config, secret, timeout)
    return WebhookConnector(config, secret, client, block_private=block_private)
