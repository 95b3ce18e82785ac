"""What a handler selects and what it sends: filters, connection configs, body templates,
signatures and retry delays. No I/O here.

A handler's ``filter`` is ``{type: telemetry, lwm2mUrls}`` (numeric ``/o[/i[/r[/ri]]]``
paths; a value matches when its resource lies at or under one of them) or
``{type: lifecycle, eventTypes}``. Events are plain dicts (``Event``) with the Coiote
payload fields ``endpointName, domainId, url, value, timestamp`` (ms) and ``eventType``
(``telemetry`` or a lifecycle type).
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from meadowlark.core.errors import InvalidInput
from meadowlark.lwm2m.path import InvalidPathError, LwM2mPath

Event = dict[str, Any]

WEBHOOK = "webhook"
KAFKA = "kafka"
MQTT = "mqtt"
HANDLER_TYPES = (WEBHOOK, KAFKA, MQTT)

TELEMETRY = "telemetry"
LIFECYCLE = "lifecycle"
DEVICE_LIFECYCLE = (
    "deviceCreated",
    "deviceFirstRegistration",
    "deviceUpdatedViaWrite",
    "deviceUpdatedViaFota",
    "deviceDeleted",
)
ALERT_LIFECYCLE = ("alertRaised", "alertAcknowledged", "alertCleared")
LIFECYCLE_TYPES = DEVICE_LIFECYCLE + ALERT_LIFECYCLE

MAX_HANDLERS_PER_DOMAIN = 10
FAILURES_BEFORE_DISABLE = 5
SECRET_MASK = "******"  # noqa: S105 - the mask shown instead of a secret
MAX_URLS = 256
MAX_TEMPLATE = 16384
MAX_HEADERS = 32

BAD_ID = 4002
TOO_MANY_HANDLERS = 4004
BAD_URI = 4005
BAD_BOOTSTRAP = 4006

HANDLER_ID = re.compile(r"[0-9a-f]{24}")
_VARIABLE = re.compile(r"\$(endpointName|domainId|url|value|timestamp)\b")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})):(\d{1,5})$")


def new_handler_id() -> str:
    return secrets.token_hex(12)


def check_handler_id(handler_id: str) -> str:
    if not HANDLER_ID.fullmatch(handler_id):
        raise InvalidInput(
            f"handler id {handler_id[:64]!r} is not 24 hexadecimal digits", code=BAD_ID
        )
    return handler_id


def kind_key(name: str) -> str:
    """``alertRaised``, ``ALERT_RAISED`` and ``alert_raised`` all name one event type."""
    return name.replace("_", "").lower()


# --- filters ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandlerFilter:
    type: str
    urls: tuple[LwM2mPath, ...] = ()
    event_types: frozenset[str] = frozenset()
    """``kind_key`` of each selected lifecycle type."""

    def selects_path(self, path: LwM2mPath) -> bool:
        return self.type == TELEMETRY and any(path.starts_with(url) for url in self.urls)

    def selects_kind(self, kind: str) -> bool:
        return self.type == LIFECYCLE and kind_key(kind) in self.event_types


def parse_filter(raw: Any) -> tuple[HandlerFilter, dict[str, Any]]:
    """The filter and its canonical stored form; 400 (4000, or 4003 for a bad URL)."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("filter must be an object", code=4000)
    kind = raw.get("type")
    if kind == TELEMETRY:
        urls = raw.get("lwm2mUrls")
        if not isinstance(urls, list) or not urls or len(urls) > MAX_URLS:
            raise InvalidInput(f"lwm2mUrls must list 1..{MAX_URLS} LwM2M URLs", code=4000)
        paths = []
        for url in urls:
            if not isinstance(url, str) or not re.fullmatch(r"(/\d{1,5}){1,4}", url):
                raise InvalidInput(f"bad LwM2M URL {str(url)[:64]!r}: use /o/i/r", code=4003)
            try:
                paths.append(LwM2mPath.parse(url))
            except InvalidPathError as exc:
                raise InvalidInput(f"bad LwM2M URL {url!r}: {exc}", code=4003) from None
        canonical = sorted({str(path) for path in paths})
        return HandlerFilter(TELEMETRY, urls=tuple(paths)), {
            "type": TELEMETRY,
            "lwm2mUrls": canonical,
        }
    if kind == LIFECYCLE:
        types = raw.get("eventTypes")
        if not isinstance(types, list) or not types:
            raise InvalidInput("eventTypes must list lifecycle event types", code=4000)
        unknown = [t for t in types if t not in LIFECYCLE_TYPES]
        if unknown:
            raise InvalidInput(
                f"unknown event types {[str(t)[:40] for t in unknown][:5]}; known: "
                + ", ".join(LIFECYCLE_TYPES),
                code=4000,
            )
        chosen = [t for t in LIFECYCLE_TYPES if t in types]
        return HandlerFilter(LIFECYCLE, event_types=frozenset(map(kind_key, chosen))), {
            "type": LIFECYCLE,
            "eventTypes": chosen,
        }
    raise InvalidInput("filter type must be telemetry or lifecycle", code=4000)


def filter_of(stored: Mapping[str, Any]) -> HandlerFilter:
    return parse_filter(stored)[0]


# --- connection configs ----------------------------------------------------------------------


def check_uri(uri: Any, schemes: tuple[str, ...], *, block_private: bool) -> str:
    """An absolute URI of one of ``schemes`` with a host and no credentials (4005).

    Link-local targets (169.254.0.0/16 and fe80::/10: cloud metadata services) are
    always refused; loopback and private networks only with ``block_private``.
    """
    if not isinstance(uri, str) or not uri or len(uri) > 2048:
        raise InvalidInput("uri must be a non-empty URI of at most 2048 characters", code=BAD_URI)
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise InvalidInput(f"bad handler URI {uri[:100]!r}", code=BAD_URI) from None
    if parts.scheme.lower() not in schemes:
        raise InvalidInput(f"handler URI scheme must be one of {', '.join(schemes)}", code=BAD_URI)
    if not parts.hostname or any(ch.isspace() for ch in uri):
        raise InvalidInput(f"handler URI {uri[:100]!r} has no host", code=BAD_URI)
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("credentials go in auth, not in the handler URI", code=BAD_URI)
    if port == 0:
        raise InvalidInput("handler URI port must be 1..65535", code=BAD_URI)
    check_target_address(parts.hostname, block_private=block_private)
    return uri


def check_target_address(host: str, *, block_private: bool) -> None:
    """Refuse link-local addresses always, loopback/private ones when asked (4005)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if block_private and host.lower() in ("localhost", "localhost.localdomain"):
            raise InvalidInput("handler URI targets this host", code=BAD_URI) from None
        return
    if address.is_link_local or address.is_multicast or address.is_unspecified:
        raise InvalidInput("handler URI targets a link-local or reserved address", code=BAD_URI)
    if block_private and (address.is_loopback or address.is_private or address.is_reserved):
        raise InvalidInput("handler URI targets a private address", code=BAD_URI)


def _check_headers(raw: Any, field_name: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or len(raw) > MAX_HEADERS:
        raise InvalidInput(f"{field_name} must map at most {MAX_HEADERS} names to values")
    headers: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidInput(f"bad header name {str(name)[:64]!r} in {field_name}")
        if not isinstance(value, str) or len(value) > 4096 or any(c in value for c in "\r\n"):
            raise InvalidInput(f"bad value of header {name!r} in {field_name}")
        headers[name] = value
    return headers


def _check_template(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidInput("bodyTemplate must be {contentType, value}")
    content_type = raw.get("contentType", "text")
    value = raw.get("value")
    if content_type not in ("text", "json"):
        raise InvalidInput("bodyTemplate.contentType must be text or json")
    if not isinstance(value, str) or len(value) > MAX_TEMPLATE:
        raise InvalidInput(f"bodyTemplate.value must be text of at most {MAX_TEMPLATE} chars")
    template = {"contentType": content_type, "value": value}
    if content_type == "json":
        sample = render_template(template, sample_event())
        try:
            json.loads(sample)
        except ValueError:
            raise InvalidInput(
                "bodyTemplate (json) does not give JSON; write string variables inside "
                'quotes ("$endpointName") and $value, $timestamp bare'
            ) from None
    return template


def _check_auth(raw: Any, previous: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Webhook auth in clear; a masked secret keeps ``previous``'s (an edit of a GET)."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidInput("auth must be null or an object with a type")
    kind = raw.get("type")
    fields = {"basic": ("user", "password"), "token": ("token",), "customAuth": ("value",)}
    if kind not in fields:
        raise InvalidInput("auth type must be basic, token or customAuth")
    auth = {"type": str(kind)}
    for name in fields[kind]:
        value = raw.get(name)
        if value == SECRET_MASK and previous and previous.get("type") == kind:
            value = previous.get(name)
        if not isinstance(value, str) or not value or len(value) > 4096:
            raise InvalidInput(f"auth.{name} must be non-empty text")
        if any(c in value for c in "\r\n"):
            raise InvalidInput(f"auth.{name} must be one line")
        auth[name] = value
    return auth


def check_webhook(
    raw: Any, *, block_private: bool, previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInput("connectionConfig must be an object")
    method = str(raw.get("method") or "post").lower()
    if method not in ("post", "put", "patch"):
        raise InvalidInput("method must be post, put or patch")
    body_format = raw.get("format") or "generic"
    if body_format not in ("generic", "influxDb"):
        raise InvalidInput("format must be generic or influxDb")
    return {
        "uri": check_uri(raw.get("uri"), ("http", "https"), block_private=block_private),
        "method": method,
        "format": body_format,
        "additionalHeaders": _check_headers(raw.get("additionalHeaders"), "additionalHeaders"),
        "bodyTemplate": _check_template(raw.get("bodyTemplate")),
        "auth": _check_auth(raw.get("auth"), (previous or {}).get("auth")),
    }


_SECRET_PROPERTY = re.compile(r"password|secret|jaas|token", re.IGNORECASE)
KAFKA_PROPERTIES = {
    "bootstrap.servers",
    "security.protocol",
    "sasl.mechanism",
    "sasl.username",
    "sasl.password",
    "client.id",
    "acks",
    "compression.type",
    "request.timeout.ms",
}


def parse_properties(text: str) -> dict[str, str]:
    """A Java ``.properties`` text (``key=value`` or ``key: value`` lines, ``#`` comments)."""
    properties: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        match = re.fullmatch(r"([^=:\s]+)\s*[=:]\s*(.*)", line)
        if match is None:
            raise InvalidInput(f"bad Kafka property line {line[:80]!r}: use key=value")
        properties[match.group(1)] = match.group(2)
    return properties


def check_bootstrap(servers: Any) -> list[str]:
    if not isinstance(servers, str) or not servers.strip():
        raise InvalidInput("bootstrap.servers is missing", code=BAD_BOOTSTRAP)
    hosts = [item.strip() for item in servers.split(",")]
    for item in hosts:
        match = _HOST_PORT.match(item)
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise InvalidInput(
                f"bad Kafka bootstrap server {item[:100]!r}: use host:port[,host:port]",
                code=BAD_BOOTSTRAP,
            )
    return hosts


def check_kafka(raw: Any, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInput("connectionConfig must be an object")
    kind = raw.get("type", "custom")
    if kind != "custom":
        raise InvalidInput(
            "Kafka connectionConfig type must be custom (the producer properties in value): "
            "this server keeps no domain-wide Kafka properties",
            code=4000,
        )
    value = raw.get("value")
    if value == SECRET_MASK and previous:
        value = previous.get("value")
    if not isinstance(value, str) or len(value) > 16384:
        raise InvalidInput("value must be the producer's .properties text", code=BAD_BOOTSTRAP)
    properties = parse_properties(value)
    check_bootstrap(properties.get("bootstrap.servers"))
    unknown = sorted(set(properties) - KAFKA_PROPERTIES)
    if unknown:
        raise InvalidInput(
            f"unsupported Kafka properties {unknown[:5]}; supported: "
            + ", ".join(sorted(KAFKA_PROPERTIES))
        )
    topic = raw.get("topic")
    if not isinstance(topic, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic):
        raise InvalidInput("topic must be 1..249 of letters, digits, . _ -")
    return {
        "type": "custom",
        "value": value,
        "topic": topic,
        "headers": _check_headers(raw.get("headers"), "headers"),
        "bodyTemplate": _check_template(raw.get("bodyTemplate")),
    }


def check_mqtt(
    raw: Any, *, block_private: bool, previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``{uri: mqtt://host:port | mqtts://…, topicPrefix, qos 0|1, username?, password?,
    bodyTemplate?}``; each device's events go to ``<topicPrefix>/<domain>/<endpoint>``."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("connectionConfig must be an object")
    uri = check_uri(raw.get("uri"), ("mqtt", "mqtts"), block_private=block_private)
    prefix = raw.get("topicPrefix", "meadowlark")
    if not isinstance(prefix, str) or not re.fullmatch(r"[^#+\s\x00]{1,200}", prefix):
        raise InvalidInput("topicPrefix must be 1..200 characters without # + or spaces")
    qos = raw.get("qos", 1)
    if qos not in (0, 1):
        raise InvalidInput("qos must be 0 or 1")
    username = raw.get("username")
    password = raw.get("password")
    if password == SECRET_MASK and previous:
        password = previous.get("password")
    for name, value in (("username", username), ("password", password)):
        if value is not None and (not isinstance(value, str) or len(value) > 1024):
            raise InvalidInput(f"{name} must be text")
    return {
        "uri": uri,
        "topicPrefix": prefix.strip("/"),
        "qos": qos,
        "username": username,
        "password": password,
        "bodyTemplate": _check_template(raw.get("bodyTemplate")),
    }


def check_connection(
    kind: str, raw: Any, *, block_private: bool, previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    if kind == WEBHOOK:
        return check_webhook(raw, block_private=block_private, previous=previous)
    if kind == KAFKA:
        return check_kafka(raw, previous)
    return check_mqtt(raw, block_private=block_private, previous=previous)


def secret_fields(kind: str, config: Mapping[str, Any]) -> dict[str, str]:
    """The secrets of a config, by dotted name (sealed at rest, masked when shown)."""
    found: dict[str, str] = {}
    if kind == WEBHOOK and config.get("auth"):
        auth = config["auth"]
        for name in ("password", "token", "value"):
            if auth.get(name):
                found[f"auth.{name}"] = auth[name]
    elif kind == KAFKA and _SECRET_PROPERTY.search(config.get("value", "")):
        found["value"] = config["value"]
    elif kind == MQTT and config.get("password"):
        found["password"] = config["password"]
    return found


def with_fields(config: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """``config`` with dotted fields replaced (``auth.password``...)."""
    copy = json.loads(json.dumps(config))
    for dotted, value in values.items():
        target = copy
        *parents, leaf = dotted.split(".")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return copy


def masked(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as the API shows it: secrets masked (Kafka properties line by line)."""
    secrets_ = secret_fields(kind, config)
    shown = with_fields(config, {name: SECRET_MASK for name in secrets_})
    if kind == KAFKA and "value" in secrets_:
        lines = []
        for line in str(config["value"]).splitlines():
            key = re.split(r"\s*[=:]\s*", line.strip(), maxsplit=1)[0]
            lines.append(f"{key}={SECRET_MASK}" if _SECRET_PROPERTY.search(key) else line)
        shown["value"] = "\n".join(lines)
    return shown


# --- bodies ----------------------------------------------------------------------------------


def sample_event() -> Event:
    return {
        "eventType": TELEMETRY,
        "endpointName": "test-device",
        "domainId": "/root/",
        "url": "/3303/0/5700",
        "value": 21.5,
        "timestamp": 0,
    }


def _json_value(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def render_template(template: Mapping[str, str], event: Event) -> str:
    """``$endpointName $domainId $url $value $timestamp`` replaced. In a json template
    ``$value`` becomes its JSON literal and the others their JSON-escaped text (write them
    inside quotes); in a text template every variable is its plain text."""
    as_json = template.get("contentType") == "json"

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        value = event.get(name)
        if as_json:
            if name == "value":
                return _json_value(value)
            if name == "timestamp":
                return str(int(value or 0))
            return _json_value("" if value is None else str(value))[1:-1]
        return "" if value is None else str(value)

    return _VARIABLE.sub(substitute, template["value"])


def _influx_escape(text: str) -> str:
    return re.sub(r"([ ,=\\])", r"\\\1", text)


def influx_line(event: Event) -> str:
    """One InfluxDB line-protocol point (ms precision)."""
    tags = f"lwm2m,endpointName={_influx_escape(event.get('endpointName') or '-')}"
    if event.get("url"):
        tags += f",url={_influx_escape(event['url'])}"
    value = event.get("value")
    if isinstance(value, bool):
        field_value = "true" if value else "false"
    elif isinstance(value, int):
        field_value = f"{value}i"
    elif isinstance(value, float):
        field_value = repr(value)
    else:
        text = event.get("eventType") if value is None else str(value)
        field_value = _json_value(str(text))
    return f"{tags} value={field_value} {int(event.get('timestamp') or 0)}"


def render_body(config: Mapping[str, Any], event: Event) -> tuple[bytes, str]:
    """The body of one event and its content type, per the config's format/template."""
    template = config.get("bodyTemplate")
    if template:
        content_type = "application/json" if template["contentType"] == "json" else "text/plain"
        return render_template(template, event).encode(), content_type
    if config.get("format") == "influxDb":
        return influx_line(event).encode(), "text/plain; charset=utf-8"
    return json.dumps(event, separators=(",", ":"), default=str).encode(), "application/json"


# --- retries ---------------------------------------------------------------------------------


def retry_delay(attempts: int, initial: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d], d = min(cap, initial·2^(n-1))."""
    ceiling = min(cap, initial * 2 ** max(0, min(attempts, 64) - 1))
    return rng.uniform(ceiling / 2, ceiling)
