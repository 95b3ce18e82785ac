"""An aiocoap context serving a site with no transport of its own: the bootstrap server's
when it runs over DTLS only, which ``coap.dtls`` then joins (``DtlsServer.start``)."""

from __future__ import annotations

from aiocoap import Context
from aiocoap.resource import Resource


class SiteContext:
    """Owns the context; ``stop`` shuts it down with every transport that joined it."""

    def __init__(self, site: Resource, loggername: str) -> None:
        self.context = Context(serversite=site, loggername=loggername)

    async def stop(self) -> None:
        await self.context.shutdown()
