"""The HTTP side: ``/api/v1`` for scripts, ``/live`` and ``/overlay`` pages with their
WebSockets, and the Gradio UI at ``/`` (built on the same FastAPI app).

Every error is ``{"error": "one line"}`` with a 4xx (5xx only for our own bugs, and then
without the trace). ``guarded`` puts the app behind its limits: request bodies limited
before they are read, requests from other sites (and, on a loopback address, other host
names: DNS rebinding) refused, and the login when one is asked for.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from ..errors import CartoonError, InputError, quoted
from .jobs import QueueFull
from .live import Channel, LiveSession, decode_jpeg
from .studio import Look, Studio
from .uploads import Limits, TooLarge, over, receive

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("cartoon-web")
MB = 1 << 20
FRAMING = 64 << 10  # a multipart form's boundaries and fields around the file
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _header(scope, name: bytes) -> str | None:
    value = dict(scope.get("headers") or []).get(name)
    return None if value is None else value.decode("latin-1")


class BodyLimit:
    """Refuses a request body over its path's limit as it arrives (Content-Length, or the
    bytes counted), before anything is spooled to disk. ``limits`` maps a path prefix to
    (bytes, the message that says which limit and which flag raises it); other paths get
    ``default``. The body may pass the file's own limit by the form's few framing bytes."""

    def __init__(self, app, limits: dict[str, tuple[int, str]], default: tuple[int, str]):
        self.app, self.limits, self.default = app, limits, default

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        limit, said = next((v for k, v in self.limits.items() if path.startswith(k)), self.default)
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > limit + FRAMING:
            return await error(413, said)(scope, receive, send)
        seen, over_limit, answered = 0, False, False

        async def counted():
            nonlocal seen, over_limit
            if over_limit:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit + FRAMING:  # a body without a length: stop reading it here
                    over_limit = True
                    return {"type": "http.disconnect"}
            return message

        async def sending(message):
            nonlocal answered
            if not over_limit:  # once over, the app's own answer (a parse error) is not sent
                answered = True
                await send(message)

        try:
            await self.app(scope, counted, sending)
        except Exception:
            if not over_limit:
                raise
        if over_limit and not answered:
            await error(413, said)(scope, receive, send)


class Throttle:
    """Wrong passwords slowed per client: after ``free`` failures each next attempt from that
    address waits, twice as long each time up to ``most`` seconds, one attempt at a time (many
    at once gain nothing). The right password still gets in, after the wait, and clears the
    count. A bounded table: the oldest addresses are forgotten first."""

    def __init__(self, free: int = 5, first: float = 0.1, most: float = 3.0, clients: int = 10_000):
        self.free, self.first, self.most, self.clients = free, first, most, clients
        self._failures: dict[str, int] = {}
        self._turns: dict[str, asyncio.Lock] = {}

    def wait(self, client: str) -> float:
        n = self._failures.get(client, 0) - self.free
        return 0.0 if n < 0 else min(self.most, self.first * 2**n)

    @contextlib.asynccontextmanager
    async def turn(self, client: str):
        """Hold ``client``'s turn through its wait and check: its attempts go one by one."""
        async with self._turns.setdefault(client, asyncio.Lock()):
            if wait := self.wait(client):
                await asyncio.sleep(wait)
            yield
        if client not in self._failures:
            self._turns.pop(client, None)

    def failed(self, client: str) -> None:
        self._failures[client] = self._failures.pop(client, 0) + 1  # re-inserted: newest last
        while len(self._failures) > self.clients:
            old = next(iter(self._failures))
            del self._failures[old]
            self._turns.pop(old, None)

    def passed(self, client: str) -> None:
        self._failures.pop(client, None)
        self._turns.pop(client, None)


class Guard:
    """Refuses requests a page on another site made through the user's browser (a foreign
    ``Origin`` on a socket or a form POST: they could watch the camera stream or change it),
    and, while serving a loopback address, any ``Host`` but a loopback name (DNS rebinding).
    ``auth``: every path, page and socket asks for this login (browsers remember it for the
    origin; OBS takes http://user:password@host:port/overlay)."""

    def __init__(self, app, local: bool, auth: tuple[str, str] | None = None):
        self.app, self.local = app, local
        self.token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else None
        self.throttle = Throttle()

    async def _login(self, scope) -> tuple[str | None, int]:
        """(None, 200) for the right login; a reason and 401 otherwise, slowed per client."""
        given = _header(scope, b"authorization") or ""
        client = (scope.get("client") or ("?",))[0]
        async with self.throttle.turn(client):
            if given.startswith("Basic ") and secrets.compare_digest(given[6:].strip(), self.token):
                self.throttle.passed(client)
                return None, 200
            if given:  # a page's first visit sends none: not a guess
                self.throttle.failed(client)
        return "this server asks for a user and password", 401

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        host = _header(scope, b"host") or ""
        name = urlsplit(f"//{host}").hostname or ""
        origin = _header(scope, b"origin")
        why, status = None, 403
        if self.local and name not in LOOPBACK:
            why = f"this server answers to 127.0.0.1 or localhost, not {name or 'no host'}"
        elif (
            origin
            and urlsplit(origin).netloc != host
            and (scope["type"] == "websocket" or scope.get("method") not in ("GET", "HEAD"))
        ):
            why = "requests made by another site's page are refused"
        if why is None and self.token is not None:
            why, status = await self._login(scope)
        if why is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008, "reason": why})
        response = error(status, why)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="cartoon-web"'
        return await response(scope, receive, send)


def guarded(app, limits: Limits, host: str, auth: tuple[str, str] | None = None):
    """``app`` behind its upload limits, the origin and host checks, and the login if asked."""
    batch = limits.image_bytes * limits.batch_files
    most = max(limits.video_bytes, batch)
    app = BodyLimit(
        app,
        {
            "/api/v1/image": (limits.image_bytes, over(limits.image_bytes, "--max-image-mb")),
            "/api/v1/batch": (batch, over(batch, "--max-image-mb or --max-batch-files")),
            "/api/v1/video": (limits.video_bytes, over(limits.video_bytes, "--max-video-mb")),
            "/gradio_api/upload": (most, over(most, "--max-video-mb")),
        },
        default=(MB, "a request to this path is at most 1 MB"),
    )
    return Guard(app, host in LOOPBACK, auth)


def create_app(studio: Studio, channel: Channel | None = None, ui: bool = True) -> FastAPI:
    """The app for ``cartoon-web`` (``ui``: with the Gradio UI, the photo, batch and video
    API and the browser camera), or, with ``ui`` False, the overlay server of
    ``cartoon-cam --overlay``: the page, its socket and the live look (its stream publishes
    into ``channel``)."""
    app = FastAPI(title="cartoon-cam", docs_url=None, redoc_url=None, openapi_url=None)
    channel = channel or Channel()
    app.state.studio, app.state.channel = studio, channel

    _add_error_handlers(app)
    _add_live_routes(app, studio, channel)
    if ui:
        _add_studio_routes(app, studio, channel)

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
    async def _unknown(rest: str):
        return error(404, f"no /api/{rest}; see the README's HTTP API section")

    if ui:
        from .ui import mount

        app = mount(app, studio)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal is a status and one line of JSON; a bug's trace stays in the log."""

    @app.exception_handler(TooLarge)
    async def _too_large(request: Request, e: TooLarge):
        return error(413, str(e))

    @app.exception_handler(QueueFull)
    async def _busy(request: Request, e: QueueFull):
        return error(429, str(e))

    @app.exception_handler(CartoonError)
    async def _cartoon(request: Request, e: CartoonError):
        return error(400, str(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "the request"
        return error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, e: HTTPException):
        return error(e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception):
        log.exception("request failed")  # the trace stays in the server's log
        return error(500, f"internal error ({type(e).__name__}); the server's log has the details")


def _add_live_routes(app: FastAPI, studio: Studio, channel: Channel) -> None:
    """The overlay page, its socket and the live look (both servers have these)."""

    @app.get("/overlay", response_class=HTMLResponse)
    async def overlay_page():
        return HTMLResponse((STATIC / "overlay.html").read_text(encoding="utf-8"))

    @app.get("/frames.js")
    async def frames_script():
        return Response((STATIC / "frames.js").read_text(encoding="utf-8"), media_type="text/javascript")

    @app.get("/api/v1/live")
    async def live_state():
        r, o = studio.restyler, studio.options
        now = r.look() if r is not None else {"style": o.style, "strength": o.strength, "background": o.background}
        return {**now, "frames": channel.published}

    @app.post("/api/v1/live")
    async def live_set(request: Request):
        kind = request.headers.get("content-type", "")
        try:
            body = await request.json() if "json" in kind else dict(await request.form())
        except (ValueError, RecursionError):  # RecursionError: JSON nested past the parser's depth
            raise InputError('send JSON like {"style": "anime", "strength": 0.8, "background": "blur"}') from None
        if not isinstance(body, dict) or set(body) - {"style", "strength", "background"}:
            raise InputError("POST /api/v1/live takes style, strength and background only")
        strength = body.get("strength")
        try:
            strength = None if strength in (None, "") else float(strength)
        except (TypeError, ValueError):
            raise InputError(f"strength must be a number between 0 and 1, got {quoted(strength)}") from None
        return await asyncio.to_thread(
            studio.set_live, body.get("style") or None, strength, body.get("background") or None
        )

    @app.websocket("/ws/overlay")
    async def overlay_socket(ws: WebSocket):
        """Each newest frame of the live stream (``live.encode``)."""
        await ws.accept()
        await _until_gone(ws, _push(ws, channel))


def _add_studio_routes(app: FastAPI, studio: Studio, channel: Channel) -> None:
    """The web app's own routes: photos, batches, video jobs, the browser camera."""
    _add_image_routes(app, studio)
    _add_job_routes(app, studio)
    _add_camera_routes(app, studio, channel)


def _look(style, strength, size, format, background) -> Look:
    return Look(style or None, strength, size or "original", format or None, background or None)


def _add_image_routes(app: FastAPI, studio: Studio) -> None:
    limits = studio.limits

    @app.post("/api/v1/image")
    async def image(
        file: Annotated[UploadFile, File()],
        style: Annotated[str | None, Form()] = None,
        strength: Annotated[float | None, Form()] = None,
        size: Annotated[str | None, Form()] = None,
        format: Annotated[str | None, Form()] = None,
        background: Annotated[str | None, Form()] = None,
    ):
        path = await receive(file, studio.folder, limits.image_bytes, "--max-image-mb")
        try:
            shown = file.filename or "image"
            photo = await asyncio.to_thread(studio.photo, path, shown, _look(style, strength, size, format, background))
        finally:
            path.unlink(missing_ok=True)
        headers = {"X-Faces": str(photo.faces)}
        if photo.notes:  # a header carries printable ASCII only
            headers["X-Notes"] = "".join(c if " " <= c <= "~" else "?" for c in "; ".join(photo.notes))
        return Response(photo.data, media_type=photo.media_type, headers=headers)

    @app.post("/api/v1/batch")
    async def batch(
        files: Annotated[list[UploadFile], File()],
        style: Annotated[str | None, Form()] = None,
        strength: Annotated[float | None, Form()] = None,
        size: Annotated[str | None, Form()] = None,
        format: Annotated[str | None, Form()] = None,
        background: Annotated[str | None, Form()] = None,
    ):
        if len(files) > limits.batch_files:
            raise InputError(f"{len(files)} files is over the {limits.batch_files}-file limit of a batch")
        items: list = []
        try:
            for f in files:  # one refused file is a line of the report, not the end of the batch
                try:
                    got = await receive(f, studio.folder, limits.image_bytes, "--max-image-mb")
                except CartoonError as e:
                    got = e
                items.append((got, f.filename or ""))
            zip_path, _ = await asyncio.to_thread(studio.batch, items, _look(style, strength, size, format, background))
        finally:
            for p, _ in items:
                if isinstance(p, Path):
                    p.unlink(missing_ok=True)
        return FileResponse(
            zip_path,
            media_type="application/zip",
            filename="cartoons.zip",
            background=BackgroundTask(zip_path.unlink, missing_ok=True),
        )


def _add_job_routes(app: FastAPI, studio: Studio) -> None:
    limits = studio.limits

    def unknown(job_id: str):
        return error(404, f"no job {quoted(job_id)} (finished jobs are kept for an hour)")

    @app.post("/api/v1/video", status_code=202)
    async def video(
        file: Annotated[UploadFile, File()],
        style: Annotated[str | None, Form()] = None,
        strength: Annotated[float | None, Form()] = None,
        background: Annotated[str | None, Form()] = None,
    ):
        path = await receive(file, studio.folder, limits.video_bytes, "--max-video-mb")
        try:
            job = await asyncio.to_thread(
                studio.submit_video, path, file.filename or "video", _look(style, strength, None, None, background)
            )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return JSONResponse({"job": job}, status_code=202)

    @app.get("/api/v1/jobs/{job_id}")
    async def job_state(job_id: str):
        st = studio.jobs.state(job_id)
        if st is None:
            return unknown(job_id)
        return st.public()

    @app.delete("/api/v1/jobs/{job_id}")
    async def job_cancel(job_id: str):
        st = studio.jobs.cancel(job_id)
        if st is None:
            return unknown(job_id)
        if st.state not in ("cancelling", "cancelled"):
            return error(409, f"the job is {st.state}; only a queued or running job can be cancelled")
        return st.public()

    @app.get("/api/v1/jobs/{job_id}/result")
    async def job_result(job_id: str):
        st = studio.jobs.state(job_id)
        if st is None:
            return unknown(job_id)
        found = studio.jobs.result(job_id)
        if found is None:
            why = st.error if st.state == "failed" else f"the job is {st.state}; poll /api/v1/jobs/{job_id}"
            return error(409, why)
        return FileResponse(found[0], media_type="video/mp4", filename=found[1])


def _add_camera_routes(app: FastAPI, studio: Studio, channel: Channel) -> None:
    live_lock = asyncio.Lock()
    current: dict = {"live": None, "socket": None}

    @app.get("/live", response_class=HTMLResponse)
    async def live_page():
        return HTMLResponse((STATIC / "live.html").read_text(encoding="utf-8"))

    @app.websocket("/ws/live")
    async def live_socket(ws: WebSocket):
        """A browser camera: binary messages are [4-byte frame number][JPEG]; each cartoon
        comes back the same way (the number of the frame it was made from). One camera at a
        time: a newer page takes over, and the older one is told so."""
        await ws.accept()
        live: LiveSession | None = None
        sender = None
        try:
            restyler = await asyncio.to_thread(studio.live_restyler)
            while True:
                data = await _frame_bytes(ws)
                if len(data) > 4 * MB:
                    raise InputError("a live frame is over 4 MB")
                index = int.from_bytes(data[:4], "big")
                image = await asyncio.to_thread(decode_jpeg, data[4:])
                if live is None:
                    async with live_lock:
                        old, old_socket = current["live"], current["socket"]
                        if old is not None:
                            with contextlib.suppress(Exception):
                                await old_socket.close(1000, "another page took the camera stream")
                            await asyncio.to_thread(old.close)
                        since = channel.published  # what came before is another session's
                        live = await asyncio.to_thread(LiveSession, restyler, image, channel)
                        current.update(live=live, socket=ws)
                    sender = asyncio.create_task(_push(ws, channel, numbered=True, session=live, since=since))
                live.push(image, index)
        except (WebSocketDisconnect, RuntimeError):
            pass
        except CartoonError as e:
            with contextlib.suppress(Exception):
                await ws.close(1003, str(e)[:120])
        finally:
            if sender is not None:
                sender.cancel()
            if live is not None:
                if current["live"] is live:
                    current.update(live=None, socket=None)
                await asyncio.to_thread(live.close)


async def _frame_bytes(ws: WebSocket) -> bytes:
    """The next binary message; a text one is refused (the socket closes with 1003)."""
    message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    if message.get("bytes") is None:
        raise InputError("send binary frames: a 4-byte frame number, then a JPEG")
    return message["bytes"]


async def _until_gone(ws: WebSocket, work) -> None:
    """Run ``work`` until it ends or the client goes (noticed even while nothing is sent)."""
    task = asyncio.ensure_future(work)

    async def listen():
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                await ws.receive()

    listener = asyncio.ensure_future(listen())
    await asyncio.wait([task, listener], return_when=asyncio.FIRST_COMPLETED)
    for t in (task, listener):
        t.cancel()


async def _push(
    ws: WebSocket, channel: Channel, numbered: bool = False, session: LiveSession | None = None, since: int = 0
) -> None:
    """Send the channel's newest frame each time there is one after number ``since`` (frames
    made while the last was sending are skipped: the page always shows the newest). A live
    page is told why when its stream ends."""
    last = since
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
        while True:
            got = await channel.next(last)
            if got is None:
                if session is not None and not session.alive:
                    await ws.close(1011, (session.error or "the live stream ended")[:120])
                    return
                continue
            last, out = got
            if out.alpha is not None:  # the heads' box as raw bytes: a copy, quicker than a hop to a thread
                data = channel.encoded(last, out)
            else:
                data = await asyncio.to_thread(channel.encoded, last, out)
            head = max(out.frame.index, 0).to_bytes(4, "big") if numbered else b""
            await ws.send_bytes(head + data)
