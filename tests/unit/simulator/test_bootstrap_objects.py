"""The simulator's bootstrap-side objects 0 and 1: what a bootstrap server may do to them."""

from __future__ import annotations

import pytest
from aiocoap import Message
from aiocoap.numbers.codes import Code

from meadowlark.lwm2m.codec import registry
from meadowlark.lwm2m.codec.formats import ContentFormat
from meadowlark.lwm2m.codec.link_format import decode_links, encode_links
from meadowlark.lwm2m.node import ObjectInstance, ResourceType, SingleResource
from meadowlark.lwm2m.path import LwM2mPath
from meadowlark.simulator.bootstrap import BootstrapClient, BootstrapObjects
from meadowlark.simulator.objects import models

P = LwM2mPath.parse


def instance(instance_id: int, **values: tuple[ResourceType, object]) -> ObjectInstance:
    return ObjectInstance(
        instance_id,
        {int(k[1:]): SingleResource(int(k[1:]), t, v) for k, (t, v) in values.items()},  # type: ignore[arg-type]
    )


SECURITY = instance(
    3,
    r0=(ResourceType.STRING, "coap://mgmt:5683"),
    r1=(ResourceType.BOOLEAN, False),
    r2=(ResourceType.INTEGER, 3),
    r10=(ResourceType.INTEGER, 42),
)
SERVER = instance(
    1,
    r0=(ResourceType.INTEGER, 42),
    r1=(ResourceType.INTEGER, 600),
    r7=(ResourceType.STRING, "UQ"),
)


def test_delete_keeps_the_bootstrap_account_and_writes_make_a_management_account():
    objects = BootstrapObjects("coap://bs:5783")
    assert objects.management_account() is None
    objects.write(P("/0/3"), SECURITY)
    objects.write(P("/1/1"), SERVER)
    account = objects.management_account()
    assert account is not None and not account.needs_dtls
    assert (account.server_uri, account.short_server_id, account.lifetime, account.binding) == (
        "coap://mgmt:5683",
        42,
        600,
        "UQ",
    )
    objects.delete(P("/"))
    assert set(objects.objects[0]) == {0} and objects.objects[1] == {}
    with pytest.raises(Exception, match="Bootstrap-Delete"):
        objects.delete(P("/3/0"))


def test_discover_shows_accounts_and_read_is_limited_to_the_server_object():
    objects = BootstrapObjects("coap://bs:5783", "1.2")
    objects.write(P("/0/3"), SECURITY)
    objects.write(P("/1/1"), SERVER)
    discovered = decode_links(encode_links(objects.discover(P("/"))))
    links = {link.uri: link.params for link in discovered}
    assert links["/"]["lwm2m"] == "1.2"
    assert "ssid" not in links["/0/0"] and links["/0/3"]["ssid"] == "42"
    assert links["/1/1"]["ssid"] == "42"
    read = objects.read(P("/1/1"))
    assert isinstance(read, ObjectInstance) and read.resources[1].value == 600  # type: ignore[union-attr]
    for refused in ("/0/0", "/3/0", "/1/1/1"):
        with pytest.raises(Exception, match="Bootstrap-Read"):
            objects.read(P(refused))


def test_finish_without_a_management_account_is_4_06():
    client = BootstrapClient("dev", ("127.0.0.1", 9), "coap://bs:9")
    finish = Message(code=Code.POST, uri_path=("bs",))
    assert client._handle(finish).code == Code.NOT_ACCEPTABLE  # type: ignore[union-attr]
    write = Message(
        code=Code.PUT,
        uri_path=("0", "3"),
        payload=registry.encode(ContentFormat.SENML_CBOR, SECURITY, P("/0/3"), models()),
        content_format=ContentFormat.SENML_CBOR,
    )
    assert client._handle(write).code == Code.CHANGED  # type: ignore[union-attr]
    server = Message(
        code=Code.PUT,
        uri_path=("1", "1"),
        payload=registry.encode(ContentFormat.TLV, SERVER, P("/1/1"), models()),
        content_format=ContentFormat.TLV,
    )
    assert client._handle(server).code == Code.CHANGED  # type: ignore[union-attr]
    assert client._handle(finish).code == Code.CHANGED  # type: ignore[union-attr]
    assert client.requests == [("POST", "/bs"), ("PUT", "/0/3"), ("PUT", "/1/1"), ("POST", "/bs")]


def test_simulate_checks_the_bootstrap_pack_option() -> None:
    import typer
    from typer.testing import CliRunner

    from meadowlark.cli.simulate import simulate

    app = typer.Typer()
    app.command()(simulate)
    alone = CliRunner().invoke(app, ["--bootstrap-pack", "--lwm2m-version", "1.2"])
    assert alone.exit_code == 2 and "needs --bootstrap" in alone.output
    old = CliRunner().invoke(app, ["--bootstrap", "coap://127.0.0.1:5783", "--bootstrap-pack"])
    assert old.exit_code == 2 and "1.2" in old.output
