"""Gradio answers an upload with where the file now lies on this server (an absolute path in
the server's temporary folder, which names its process) and the page sends that path back in
its requests. ``UploadPaths`` shows the page ``upload/...`` instead and maps it back on the
way in, so nothing the server answers tells where its files are."""

from __future__ import annotations

import json
import os
from urllib.parse import quote

PREFIX = "upload/"
_FILE_ROUTE = "/gradio_api/file="


class UploadPaths:
    """ASGI middleware over the Gradio app whose upload folder is ``root``. Only Gradio's own
    routes are touched: the upload reply (rewritten), file links (mapped back, their refusals
    hidden) and the files named in request bodies (small JSON, already held to 1 MB by
    ``BodyLimit``; mapped back). Files the app makes are still named by their path in Gradio's
    result stream."""

    def __init__(self, app, root: str):
        self.app = app
        # as Gradio names its files: resolved (macOS's /var is /private/var), the OS's separator
        self.root = os.path.join(os.path.realpath(root), "")

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/gradio_api/"):
            return await self.app(scope, receive, send)
        if path.startswith(_FILE_ROUTE + PREFIX):
            real = _FILE_ROUTE + self.root + path[len(_FILE_ROUTE + PREFIX) :]
            scope = {**scope, "path": real, "raw_path": quote(real).encode()}
            return await self.app(scope, receive, self._refusals_hidden(send))
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

    def _refusals_hidden(self, send):
        """A file link's refusal (403, 404) without ``root`` in its words; a file itself as it is."""
        status = {}

        async def hiding(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                if message["status"] >= 400:
                    message = {**message, "headers": [(k, v) for k, v in message["headers"] if k != b"content-length"]}
            elif message["type"] == "http.response.body" and status.get("code", 200) >= 400:
                body = message.get("body", b"")
                for spelling in {self.root, json.dumps(self.root)[1:-1]}:  # as is, and inside JSON (Windows' \\)
                    body = body.replace(spelling.encode(), PREFIX.encode())
                message = {**message, "body": body}
            await send(message)

        return hiding

    def _hidden(self, path):
        return PREFIX + path[len(self.root) :] if isinstance(path, str) and path.startswith(self.root) else path

    async def _revealed(self, receive):
        """The request's body with the ``path`` (and file-link ``url``) of every file in it mapped
        back; anything else, a user's text that happens to start ``upload/`` included, as it
        came. A ``receive`` that gives it (None and the messages as they came if the client left,
        or the body is not JSON)."""
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None, _replay([message], receive)
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            mapped = json.dumps(self._revealed_in(json.loads(body))).encode()
        except (ValueError, RecursionError):  # not JSON: nothing of ours in it
            return None, _replay([{"type": "http.request", "body": body, "more_body": False}], receive)
        return mapped, _replay([{"type": "http.request", "body": mapped, "more_body": False}], receive)

    def _revealed_in(self, value):
        if isinstance(value, list):
            return [self._revealed_in(v) for v in value]
        if not isinstance(value, dict):
            return value
        out = {k: self._revealed_in(v) for k, v in value.items()}
        if isinstance(out.get("path"), str) and out["path"].startswith(PREFIX):
            out["path"] = self.root + out["path"][len(PREFIX) :]
            if isinstance(out.get("url"), str) and _FILE_ROUTE + PREFIX in out["url"]:
                out["url"] = out["url"].replace(_FILE_ROUTE + PREFIX, _FILE_ROUTE + self.root, 1)
        return out


def _replay(messages: list, then):
    """A ``receive`` that gives these messages, then the server's own (a disconnect, in time)."""
    pending = list(messages)

    async def receive():
        return pending.pop(0) if pending else await then()

    return receive
