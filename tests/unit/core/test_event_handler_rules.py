"""Event handler rules: filters, connection configs, body templates, signatures, backoff."""

from __future__ import annotations

import hashlib
import hmac
import json
import random

import pytest

from meadowlark.core.errors import InvalidInput
from meadowlark.core.event_handlers import rules
from meadowlark.core.event_handlers.connectors import kafka_options, mqtt_topic, signed_headers
from meadowlark.core.event_handlers.outbox import leaves
from meadowlark.lwm2m.node import MultiResource, ObjectInstance, ResourceType, SingleResource
from meadowlark.lwm2m.path import LwM2mPath

EVENT = {
    "eventType": "telemetry",
    "endpointName": 'dev "1"',
    "domainId": "/root/a/",
    "url": "/3303/0/5700",
    "value": 21.5,
    "timestamp": 1700000000123,
}


def _code(call) -> int | None:
    with pytest.raises(InvalidInput) as raised:
        call()
    return raised.value.code


# --- filters ---------------------------------------------------------------------------------


def test_telemetry_filter_selects_paths_at_or_under_its_urls():
    selected, stored = rules.parse_filter(
        {"type": "telemetry", "lwm2mUrls": ["/3303/0/5700", "/3", "/3303/0/5700"]}
    )
    assert stored == {"type": "telemetry", "lwm2mUrls": ["/3", "/3303/0/5700"]}
    assert selected.selects_path(LwM2mPath.parse("/3303/0/5700"))
    assert selected.selects_path(LwM2mPath.parse("/3/0/7/1"))
    assert not selected.selects_path(LwM2mPath.parse("/3303/0/5701"))
    assert not selected.selects_path(LwM2mPath.parse("/33/0/1"))
    assert not selected.selects_kind("deviceCreated")


@pytest.mark.parametrize("url", ["3303/0", "/a/0/1", "/1/2/3/4/5", "/70000", "", 5])
def test_telemetry_filter_refuses_bad_urls_with_4003(url):
    assert _code(lambda: rules.parse_filter({"type": "telemetry", "lwm2mUrls": [url]})) == 4003


def test_lifecycle_filter_accepts_device_and_alert_types_in_any_spelling_of_the_kind():
    selected, stored = rules.parse_filter(
        {"type": "lifecycle", "eventTypes": ["alertCleared", "deviceCreated", "alertRaised"]}
    )
    assert stored["eventTypes"] == ["deviceCreated", "alertRaised", "alertCleared"]
    assert selected.selects_kind("deviceCreated")
    assert selected.selects_kind("ALERT_RAISED")  # an EventKind spelled the enum way
    assert selected.selects_kind("alertCleared")
    assert not selected.selects_kind("alertAcknowledged")
    assert not selected.selects_path(LwM2mPath.parse("/3/0/0"))


@pytest.mark.parametrize(
    "raw",
    [
        None,
        {"type": "other"},
        {"type": "lifecycle", "eventTypes": []},
        {"type": "lifecycle", "eventTypes": ["deviceExploded"]},
        {"type": "telemetry", "lwm2mUrls": []},
    ],
)
def test_bad_filters_are_4000(raw):
    assert _code(lambda: rules.parse_filter(raw)) == 4000


# --- connection configs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://example.com",
        "http://",
        "not a uri",
        "http://user:pw@example.com/",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/",
        "http://example.com:0/",
        "http://example.com:99999/",
        "",
    ],
)
def test_bad_webhook_uris_are_4005(uri):
    assert _code(lambda: rules.check_webhook({"uri": uri}, block_private=False)) == 4005


def test_private_targets_are_refused_only_when_asked():
    for uri in ("http://127.0.0.1:9/", "http://10.1.2.3/", "http://localhost/"):
        rules.check_webhook({"uri": uri}, block_private=False)
        assert _code(lambda uri=uri: rules.check_webhook({"uri": uri}, block_private=True)) == 4005


def test_webhook_config_is_normalised_and_masked_secrets_keep_the_stored_ones():
    config = rules.check_webhook(
        {"uri": "https://example.com/in", "auth": {"type": "basic", "user": "u", "password": "p"}},
        block_private=True,
    )
    assert config["method"] == "post" and config["format"] == "generic"
    shown = rules.masked("webhook", config)
    assert shown["auth"] == {"type": "basic", "user": "u", "password": rules.SECRET_MASK}
    again = rules.check_webhook(shown, block_private=True, previous=config)
    assert again["auth"]["password"] == "p"
    assert rules.secret_fields("webhook", config) == {"auth.password": "p"}


@pytest.mark.parametrize(
    "servers",
    ["", "localhost", "localhost:", "host:port", "a:9092,,b:9092", "a:0", "a:70000", "a b:1"],
)
def test_bad_kafka_bootstrap_strings_are_4006(servers):
    raw = {"type": "custom", "value": f"bootstrap.servers={servers}", "topic": "t"}
    assert _code(lambda: rules.check_kafka(raw)) == 4006


def test_kafka_properties_become_producer_options_and_passwords_are_masked():
    value = (
        "# cluster\nbootstrap.servers=k1:9092, k2:9093\nsecurity.protocol=SASL_PLAINTEXT\n"
        "sasl.mechanism=PLAIN\nsasl.username=me\nsasl.password=hush\nacks=1"
    )
    config = rules.check_kafka({"type": "custom", "value": value, "topic": "lwm2m.events"})
    options = kafka_options(config["value"], 5.0)
    assert options["bootstrap_servers"] == ["k1:9092", "k2:9093"]
    assert options["sasl_plain_password"] == "hush" and options["acks"] == 1
    shown = rules.masked("kafka", config)
    assert "hush" not in shown["value"] and "sasl.password=******" in shown["value"]
    assert "bootstrap.servers=k1:9092, k2:9093" in shown["value"]


def test_mqtt_topic_is_per_device_and_has_no_wildcards():
    assert mqtt_topic("fleet", EVENT) == 'fleet/root/a/dev "1"'
    assert mqtt_topic("fleet", {**EVENT, "endpointName": "a+b#"}) == "fleet/root/a/a_b_"


# --- bodies ----------------------------------------------------------------------------------


def test_generic_body_is_the_event_as_json():
    body, content_type = rules.render_body({"format": "generic"}, EVENT)
    assert content_type == "application/json" and json.loads(body) == EVENT


def test_json_template_substitutes_every_variable_into_valid_json():
    template = {
        "contentType": "json",
        "value": '{"ep":"$endpointName","d":"$domainId","u":"$url","v":$value,"t":$timestamp}',
    }
    body, content_type = rules.render_body({"bodyTemplate": template}, EVENT)
    assert content_type == "application/json"
    assert json.loads(body) == {
        "ep": 'dev "1"',
        "d": "/root/a/",
        "u": "/3303/0/5700",
        "v": 21.5,
        "t": 1700000000123,
    }
    text_value = json.loads(rules.render_template(template, {**EVENT, "value": 'say "hi"'}))
    assert text_value["v"] == 'say "hi"'


def test_text_template_and_influx_format():
    template = {"contentType": "text", "value": "$endpointName $url=$value @$timestamp"}
    assert rules.render_template(template, EVENT) == 'dev "1" /3303/0/5700=21.5 @1700000000123'
    line, _ = rules.render_body({"format": "influxDb"}, {**EVENT, "endpointName": "a b"})
    assert line.decode() == r"lwm2m,endpointName=a\ b,url=/3303/0/5700 value=21.5 1700000000123"


def test_a_json_template_that_does_not_give_json_is_refused():
    raw = {"uri": "http://example.com", "bodyTemplate": {"contentType": "json", "value": "{$url}"}}
    with pytest.raises(InvalidInput):
        rules.check_webhook(raw, block_private=False)


# --- signature, values, backoff ---------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    headers = signed_headers("s3cret", b'{"a":1}', "42")
    expected = hmac.new(
        b"s3cret", headers["X-Meadowlark-Timestamp"].encode() + b'.{"a":1}', hashlib.sha256
    ).hexdigest()
    assert headers["X-Meadowlark-Signature"] == f"sha256={expected}"
    assert headers["X-Meadowlark-Delivery"] == "42"


def test_backoff_doubles_with_jitter_up_to_the_cap():
    rng = random.Random(7)
    for attempts, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (10, 30.0), (500, 30.0)):
        delays = [rules.retry_delay(attempts, 0.5, 30.0, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_leaves_flatten_instances_and_multi_resources():
    instance = ObjectInstance(
        0,
        {
            5700: SingleResource(5700, ResourceType.FLOAT, 1.5),
            7: MultiResource(7, ResourceType.INTEGER, {1: 10, 0: 20}),
        },
    )
    found = [(str(p), v) for p, v in leaves(LwM2mPath.parse("/3303/0"), instance)]
    assert found == [("/3303/0/7/0", 20), ("/3303/0/7/1", 10), ("/3303/0/5700", 1.5)]


def test_handler_ids_are_24_hex_digits():
    assert rules.HANDLER_ID.fullmatch(rules.new_handler_id())
    assert _code(lambda: rules.check_handler_id("xyz")) == 4002
