"""Gradio answers an upload with where the file now lies on this server (an absolute path in
the server's temporary folder, which names its process) and the page sends that path back in
its requests. ``UploadPaths`` shows the page ``upload/...`` instead and maps it back on the
way in, so nothing the server answers tells where its files are."""

from __future__ import annotations

import json
from urllib.parse import quote

PREFIX = "upload/"
_FILE_ROUTE = "/gradio_api/file="


class UploadPaths:
    """ASGI middleware over the Gradio app whose upload folder is ``root``. Only Gradio's own
    routes are touched: the upload reply (rewritten), file links (mapped back) and request
    bodies (small JSON, already held to 1 MB by ``BodyLimit``; mapped back)."""

    def __init__(self, app, root: str):
        self.app = app
        self.root = root.rstrip("/") + "/"

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/gradio_api/"):
            return await self.app(scope, receive, send)
        if path.startswith(_FILE_ROUTE + PREFIX):
            real = _FILE_ROUTE + self.root + path[len(_FILE_ROUTE + PREFIX) :]
            scope = {**scope, "path": real, "raw_path": quote(real).encode()}
        if scope["method"] == "POST" and path == "/gradio_api/upload":
            return await self.app(scope, receive, self._hiding(send))
        if scope["method"] == "POST":
            body, receive = await self._revealed(receive)
            if body is not None:
                headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
                scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        await self.app(scope, receive, send)

    def _hiding(self, send):
        """The upload reply (a JSON list of paths) with ``root`` turned into ``upload/``."""
        held: dict = {}
        chunks: list[bytes] = []

        async def hiding(message):
            if message["type"] == "http.response.start":
                held["start"] = message
                return
            if message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            try:
                paths = json.loads(body)
                if isinstance(paths, list):
                    body = json.dumps([self._hidden(p) for p in paths]).encode()
            except ValueError:
                pass  # a refusal in plain text: passed on as it is
            start = held["start"]
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        return hiding

    def _hidden(self, path):
        return PREFIX + path[len(self.root) :] if isinstance(path, str) and path.startswith(self.root) else path

    async def _revealed(self, receive):
        """The request's body with every JSON string that starts ``upload/`` mapped back, and
        a ``receive`` that gives it (None and the messages as they came if the client left)."""
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None, _replay([message], receive)
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks).replace(b'"' + PREFIX.encode(), json.dumps(self.root)[:-1].encode())
        return body, _replay([{"type": "http.request", "body": body, "more_body": False}], receive)


def _replay(messages: list, then):
    """A ``receive`` that gives these messages, then the server's own (a disconnect, in time)."""
    pending = list(messages)

    async def receive():
        return pending.pop(0) if pending else await then()

    return receive
