"""This node's place in a deployment: calls to another node and notices to all, over
``Signals``.

A call is a message with a correlation id; the callee answers with a reply to the
caller's node. A notice is a broadcast on a topic (a revoked token, a changed Thing,
a device event) that handlers of that topic on the other nodes receive, once per item
when its data is ``{"batch": [...]}``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from meadowlark.cluster.signals import ALL, Message, Signals

_log = structlog.get_logger("meadowlark.cluster")

CallHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
NoticeHandler = Callable[[dict[str, Any]], None]


def new_node_id() -> str:
    """A fresh id for a node: one per process start, so a restarted worker is a new node
    (the registrations its predecessor held are taken over at their next Update)."""
    return secrets.token_hex(6)


class CallFailed(Exception):
    """The other node answered with an error, or did not answer in time."""

    def __init__(self, reason: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or {}


class ClusterNode:
    def __init__(self, signals: Signals) -> None:
        self.signals = signals
        self._calls: dict[str, CallHandler] = {}
        self._topics: dict[str, list[NoticeHandler]] = {}
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._serving: set[asyncio.Task[None]] = set()

    @property
    def node_id(self) -> str:
        return self.signals.node_id

    def serve(self, method: str, handler: CallHandler) -> None:
        self._calls[method] = handler

    def on(self, topic: str, handler: NoticeHandler) -> None:
        self._topics.setdefault(topic, []).append(handler)

    async def start(self) -> None:
        await self.signals.start(self._received)

    async def stop(self) -> None:
        for task in list(self._serving):
            task.cancel()
        await asyncio.gather(*self._serving, return_exceptions=True)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(CallFailed("node_stopping"))
        await self.signals.stop()

    async def call(
        self,
        node_id: str,
        method: str,
        params: dict[str, Any],
        timeout: float,  # noqa: ASYNC109 - the caller's deadline travels with the call
    ) -> dict[str, Any]:
        """Ask ``node_id`` to run ``method``; its result, or ``CallFailed``."""
        call_id = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        try:
            await self.signals.send(
                node_id,
                {"kind": "call", "id": call_id, "method": method, "params": params},
            )
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise CallFailed("no_answer") from None
        finally:
            self._waiting.pop(call_id, None)

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Tell every other node (best effort: a failing carrier is logged)."""
        try:
            await self.signals.send(ALL, {"kind": "notice", "topic": topic, "data": data})
        except Exception:  # a notice must never fail the change that caused it
            _log.exception("cluster_notice_failed", topic=topic)

    def _received(self, message: Message) -> None:
        kind = message.get("kind")
        if kind == "reply":
            future = self._waiting.get(message.get("id", ""))
            if future is None or future.done():
                return
            error = message.get("error")
            if error is not None:
                future.set_exception(CallFailed(error.get("reason", "failed"), error))
            else:
                future.set_result(message.get("result") or {})
        elif kind == "call":
            task = asyncio.get_running_loop().create_task(self._answer(message))
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
        elif kind == "notice":
            data = message.get("data") or {}
            batch = data.get("batch")
            for item in batch if isinstance(batch, list) else [data]:
                for handler in self._topics.get(message.get("topic", ""), []):
                    try:
                        handler(item)
                    except Exception:  # one broken handler must not stop the others
                        _log.exception("cluster_notice_handler_failed", topic=message.get("topic"))

    async def _answer(self, message: Message) -> None:
        handler = self._calls.get(message.get("method", ""))
        reply: Message = {"kind": "reply", "id": message.get("id")}
        if handler is None:
            reply["error"] = {"reason": "unknown_method"}
        else:
            try:
                reply["result"] = await handler(message.get("params") or {})
            except CallFailed as exc:
                reply["error"] = {"reason": exc.reason, **exc.detail}
            except Exception as exc:  # reported to the caller, who maps it to an error
                _log.exception("cluster_call_failed", method=message.get("method"))
                reply["error"] = {"reason": "failed", "message": str(exc)}
        try:
            await self.signals.send(message["from"], reply)
        except Exception:  # the caller times out
            _log.exception("cluster_reply_failed", method=message.get("method"))
