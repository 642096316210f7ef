"""The HTTP side: ``/api/v1`` for scripts, ``/live`` and ``/overlay`` pages with their
WebSockets, and the Gradio UI at ``/`` (built on the same FastAPI app).

Every error is ``{"error": "one line"}`` with a 4xx (5xx only for our own bugs, and then
without the trace); request bodies are limited before they are read (``BodyLimit``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from ..errors import CartoonError, InputError
from .live import Channel, LiveSession, decode_jpeg
from .studio import Look, Studio
from .uploads import TooLarge, receive

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("cartoon-web")
MB = 1 << 20
FRAMING = 64 << 10  # a multipart form's boundaries and fields around the file


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


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
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit + FRAMING:
            return await error(413, said)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit + FRAMING:
                    raise TooLarge(said)
            return message

        try:
            await self.app(scope, counted, send)
        except TooLarge as e:
            with contextlib.suppress(RuntimeError):  # unless the answer had begun
                await error(413, str(e))(scope, receive, send)


class BasicAuth:
    """``--auth user:password``: every path, page and socket asks for it (browsers remember it
    for the origin; OBS takes http://user:password@host:port/overlay)."""

    def __init__(self, app, user: str, password: str):
        self.app = app
        self.token = base64.b64encode(f"{user}:{password}".encode()).decode()

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            given = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            ok = given.startswith("Basic ") and secrets.compare_digest(given[6:].strip(), self.token)
            if not ok:
                if scope["type"] == "websocket":
                    return await send({"type": "websocket.close", "code": 1008})
                response = error(401, "this server asks for a user and password")
                response.headers["WWW-Authenticate"] = 'Basic realm="cartoon-web"'
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(studio: Studio, channel: Channel | None = None, ui: bool = True) -> FastAPI:
    """The app for ``cartoon-web`` (``ui``: with the Gradio UI), or, with ``ui`` False, the
    overlay server of ``cartoon-cam --overlay`` (its stream publishes into ``channel``)."""
    app = FastAPI(title="cartoon-cam", docs_url=None, redoc_url=None, openapi_url=None)
    channel = channel or Channel()
    app.state.studio, app.state.channel = studio, channel
    session: dict[str, LiveSession | None] = {"live": None}
    limits = studio.limits

    @app.exception_handler(TooLarge)
    async def _too_large(request: Request, e: TooLarge):
        return error(413, str(e))

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

    # ---- pages ---------------------------------------------------------------------------------
    @app.get("/overlay", response_class=HTMLResponse)
    async def overlay_page():
        return HTMLResponse((STATIC / "overlay.html").read_text())

    @app.get("/live", response_class=HTMLResponse)
    async def live_page():
        return HTMLResponse((STATIC / "live.html").read_text())

    @app.get("/frames.js")
    async def frames_script():
        return Response((STATIC / "frames.js").read_text(), media_type="text/javascript")

    # ---- the API -------------------------------------------------------------------------------
    def look(style, strength, size, format, background) -> Look:
        return Look(style or None, strength, size or "original", format or None, background or None)

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
            photo = await asyncio.to_thread(studio.photo, path, shown, look(style, strength, size, format, background))
        finally:
            path.unlink(missing_ok=True)
        headers = {"X-Faces": str(photo.faces)}
        if photo.notes:
            headers["X-Notes"] = "; ".join(photo.notes).encode("ascii", "replace").decode()
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
        paths = []
        try:
            for f in files:
                paths.append((await receive(f, studio.folder, limits.image_bytes, "--max-image-mb"), f.filename or ""))
            zip_path, _ = await asyncio.to_thread(studio.batch, paths, look(style, strength, size, format, background))
        finally:
            for p, _ in paths:
                p.unlink(missing_ok=True)
        return FileResponse(
            zip_path,
            media_type="application/zip",
            filename="cartoons.zip",
            background=BackgroundTask(zip_path.unlink, missing_ok=True),
        )

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
                studio.submit_video, path, file.filename or "video", look(style, strength, None, None, background)
            )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return JSONResponse({"job": job}, status_code=202)

    @app.get("/api/v1/jobs/{job_id}")
    async def job_state(job_id: str):
        st = studio.jobs.state(job_id)
        if st is None:
            return error(404, f"no job {job_id!r} (finished jobs are kept for an hour)")
        return st.public()

    @app.get("/api/v1/jobs/{job_id}/result")
    async def job_result(job_id: str):
        st = studio.jobs.state(job_id)
        if st is None:
            return error(404, f"no job {job_id!r} (finished jobs are kept for an hour)")
        found = studio.jobs.result(job_id)
        if found is None:
            why = st.error if st.state == "failed" else f"the job is {st.state}; poll /api/v1/jobs/{job_id}"
            return error(409, why)
        return FileResponse(found[0], media_type="video/mp4", filename=found[1])

    @app.get("/api/v1/live")
    async def live_state():
        r = studio.restyler
        now = (
            r.look()
            if r is not None
            else {
                "style": studio.options.style,
                "strength": studio.options.strength,
                "background": studio.options.background,
            }
        )
        return {**now, "frames": channel.published}

    @app.post("/api/v1/live")
    async def live_set(request: Request):
        kind = request.headers.get("content-type", "")
        try:
            body = await request.json() if "json" in kind else dict(await request.form())
        except ValueError:
            raise InputError('send JSON like {"style": "anime", "strength": 0.8, "background": "blur"}') from None
        if not isinstance(body, dict) or set(body) - {"style", "strength", "background"}:
            raise InputError("POST /api/v1/live takes style, strength and background only")
        strength = body.get("strength")
        try:
            strength = None if strength in (None, "") else float(strength)
        except (TypeError, ValueError):
            raise InputError(f"strength must be a number between 0 and 1, got {strength!r}") from None
        return await asyncio.to_thread(
            studio.set_live, body.get("style") or None, strength, body.get("background") or None
        )

    # ---- sockets -------------------------------------------------------------------------------
    @app.websocket("/ws/overlay")
    async def overlay_socket(ws: WebSocket):
        """Each newest frame, as PNG with alpha (or JPEG on a filled background)."""
        await ws.accept()
        await _push(ws, channel)

    @app.websocket("/ws/live")
    async def live_socket(ws: WebSocket):
        """A browser camera: binary messages are [4-byte frame number][JPEG]; each cartoon
        comes back the same way (the number of the frame it was made from)."""
        await ws.accept()
        if not ui:
            await ws.close(1008, "this server shows a camera's stream; it takes none")
            return
        live: LiveSession | None = None
        sender = None
        try:
            restyler = await asyncio.to_thread(studio.live_restyler)
            while True:
                data = await ws.receive_bytes()
                if len(data) > 4 * MB:
                    raise InputError("a live frame is over 4 MB")
                index = int.from_bytes(data[:4], "big")
                image = await asyncio.to_thread(decode_jpeg, data[4:], 1920 * 1080)
                if live is None:
                    if session["live"] is not None:  # one camera at a time: the newest page takes over
                        await asyncio.to_thread(session["live"].close)
                    live = session["live"] = await asyncio.to_thread(LiveSession, restyler, image, [channel])
                    sender = asyncio.create_task(_push(ws, channel, numbered=True, session=live))
                live.push(image, index)
        except WebSocketDisconnect:
            pass
        except CartoonError as e:
            with contextlib.suppress(Exception):
                await ws.close(1003, str(e)[:120])
        finally:
            if sender is not None:
                sender.cancel()
            if live is not None:
                if session["live"] is live:
                    session["live"] = None
                await asyncio.to_thread(live.close)

    if ui:
        from .ui import mount

        app = mount(app, studio)
    return app


async def _push(ws: WebSocket, channel: Channel, numbered: bool = False, session=None) -> None:
    """Send the channel's newest frame each time there is one (frames made while the last
    was sending are skipped: the page always shows the newest)."""
    last = 0
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
        while True:
            got = await channel.next(last)
            if got is None:
                if session is not None and session.error:
                    await ws.close(1011, session.error[:120])
                    return
                continue
            last, out = got
            if out.alpha is not None:  # the heads' box as raw bytes: a copy, quicker than a hop to a thread
                data = channel.encoded(last, out)
            else:
                data = await asyncio.to_thread(channel.encoded, last, out)
            head = max(out.frame.index, 0).to_bytes(4, "big") if numbered else b""
            await ws.send_bytes(head + data)
