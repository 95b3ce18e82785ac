"""A minimal aiocoap-based LwM2M client: enough resources to read, write, execute, observe."""

from __future__ import annotations

from aiocoap import Code, Context, Message
from aiocoap.resource import ObservableResource, Resource, Site


class TextResource(ObservableResource):
    def __init__(self, value: str, writable: bool = False) -> None:
        super().__init__()
        self.value = value
        self.writable = writable

    async def render_get(self, request: Message) -> Message:
        return Message(payload=self.value.encode(), content_format=0)

    async def render_put(self, request: Message) -> Message:
        if not self.writable:
            return Message(code=Code.METHOD_NOT_ALLOWED)
        self.value = request.payload.decode()
        return Message(code=Code.CHANGED)

    def set(self, value: str) -> None:
        self.value = value
        self.updated_state()


class ExecutableResource(Resource):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bytes] = []

    async def render_post(self, request: Message) -> Message:
        self.calls.append(request.payload)
        return Message(code=Code.CHANGED)


class FakeDevice:
    """Serves /3/0/0 (manufacturer), /3/0/4 (reboot), /3/0/13 (time), /3/0/15 (timezone),
    /1/0/1 (lifetime)."""

    def __init__(self) -> None:
        self.manufacturer = TextResource("Meadowlark Labs")
        self.reboot = ExecutableResource()
        self.time = TextResource("1700000000")
        self.lifetime = TextResource("300", writable=True)
        self.timezone = TextResource("Europe/Warsaw", writable=True)
        self.site = Site()
        self.site.add_resource(["3", "0", "0"], self.manufacturer)
        self.site.add_resource(["3", "0", "4"], self.reboot)
        self.site.add_resource(["3", "0", "13"], self.time)
        self.site.add_resource(["1", "0", "1"], self.lifetime)
        self.site.add_resource(["3", "0", "15"], self.timezone)
        self.context: Context | None = None

    async def start(self) -> None:
        self.context = await Context.create_server_context(
            self.site, bind=("127.0.0.1", 0), transports=["udp6"]
        )

    async def stop(self) -> None:
        if self.context is not None:
            await self.context.shutdown()

    async def request(
        self, method: Code, uri: str, payload: bytes = b"", content_format: int | None = 40
    ) -> Message:
        assert self.context is not None
        message = Message(code=method, uri=uri, payload=payload)
        if payload and content_format is not None:
            message.opt.content_format = content_format
        return await self.context.request(message).response
