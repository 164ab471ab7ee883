"""ASGI guards of the service: bad slide jobs refused at submit, a bounded `predict` queue.

Slide jobs: BentoML queues a task before it validates its input, so `/slide/submit` would answer
200 to any body. `SlideSubmitGuard` checks the body of a submit first: malformed JSON or a missing
path -> 400, a path outside the allowed roots -> 403, no such slide file -> 404; everything else
passes on. `PredictQueue` bounds the requests one worker holds (see there).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from autoscope.serve.settings import PathRefused, check_slide_path

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 1 << 20  # a submit body is a path and a model name: 1 MiB is plenty


class SlideSubmitGuard:
    """ASGI middleware guarding `POST <route>/submit` of the slide task.

    Args:
        app: the wrapped ASGI app.
        route: the task route (`/slide`).
        roots: the allowed slide folders.
        models: accepted values of the optional `model` field (tags and names of the models).
    """

    def __init__(
        self,
        app: Any,
        route: str = "/slide",
        roots: list[str] | None = None,
        models: list[str] | None = None,
    ) -> None:
        self.app = app
        self.submit = route.rstrip("/") + "/submit"
        self.roots = list(roots or [])
        self.models = {"", *(models or [])}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope["path"] != self.submit:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            more = msg.get("more_body", False)
            if size > MAX_BODY:
                await _reply(send, 413, f"request body over {MAX_BODY} bytes")
                return
        body = b"".join(chunks)
        refusal = self.check(body)
        if refusal is not None:
            await _reply(send, *refusal)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def check(self, body: bytes) -> tuple[int, str] | None:
        """`(status, message)` refusing a submit body, or None to let it through."""
        try:
            data = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            return 400, "request body is not JSON"
        if not isinstance(data, dict) or not isinstance(data.get("path"), str):
            return 400, 'expected a JSON object {"path": "<slide file>", "model": "<optional tag>"}'
        model = data.get("model", "")
        if not isinstance(model, str) or model not in self.models:
            return (
                400,
                f"unknown model {model!r} (packaged: {', '.join(sorted(self.models - {''}))})",
            )
        try:
            check_slide_path(data["path"], self.roots)
        except PathRefused as e:
            return 403, str(e)
        except ValueError as e:
            return (404 if "no slide file" in str(e) else 400), str(e)
        return None


async def _reply(
    send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class PredictQueue:
    """ASGI middleware bounding the `predict` requests one worker holds, with answers that say why.

    BentoML's batching dispatcher queues without bound and drops a request whose wait would pass
    `max_latency_ms` with a bare 503 ("An unexpected error has occurred"). Here a worker holds at
    most `limit` requests (running or waiting): the next one is answered at once with 503, a
    `Retry-After` and a message naming the limit; a 503 of the dispatcher itself gets a message
    naming the latency budget. Every other answer passes unchanged.

    Args:
        app: the wrapped ASGI app.
        route: the batched API's route (`/predict`).
        limit: requests one worker holds (`package.queue_limit`).
        max_latency_ms: the dispatcher's latency budget (`package.batching.max_latency_ms`).
    """

    def __init__(
        self, app: Any, route: str = "/predict", limit: int = 256, max_latency_ms: int = 30000
    ) -> None:
        self.app = app
        self.route = route
        self.limit = limit
        self.max_latency_ms = max_latency_ms
        self.held = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.route:
            await self.app(scope, receive, send)
            return
        if self.held >= self.limit:
            await _reply(
                send,
                503,
                f"queue full: this worker holds {self.held} predict requests, its limit "
                f"(package.queue_limit={self.limit}); retry later",
                [(b"retry-after", b"1")],
            )
            return
        self.held += 1
        dropped = False

        async def reply(msg: Message) -> None:
            nonlocal dropped
            if msg["type"] == "http.response.start" and msg["status"] == 503:
                dropped = True  # the dispatcher's own 503: say why, once the body comes
                return
            if dropped:
                if msg["type"] == "http.response.body" and not msg.get("more_body", False):
                    await _reply(
                        send,
                        503,
                        f"request waited over {self.max_latency_ms} ms in the batching queue "
                        "(package.batching.max_latency_ms); retry later",
                        [(b"retry-after", b"1")],
                    )
                return
            await send(msg)

        try:
            await self.app(scope, receive, reply)
        finally:
            self.held -= 1
