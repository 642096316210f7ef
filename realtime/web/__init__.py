"""cartoon-cam on the web: ``cartoon-web`` (a Gradio UI and an HTTP API over one FastAPI
app) and the OBS overlay server of ``cartoon-cam --overlay``.

    studio   the work (photos, batches, video jobs, the live look), shared by UI and API
    app      the HTTP API, the /live and /overlay pages and their WebSockets
    ui       the Gradio tabs
    live     the browser camera as a stream source, the pages' channel as its sink
    jobs     the video queue
    uploads  limits and content sniffing for untrusted files
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading


def socket_options(host: str, platform: str = sys.platform) -> list[tuple[int, int, int]]:
    """What the listening socket is set to. POSIX: reuse a port a closed server left in
    TIME_WAIT. Windows: never SO_REUSEADDR, which there binds a port another server is
    listening on; the port is exclusive instead. ``::`` also takes IPv4 (Windows' sockets are
    IPv6-only unless told), so the 127.0.0.1 address printed for it works."""
    if platform == "win32":
        out = [(socket.SOL_SOCKET, getattr(socket, "SO_EXCLUSIVEADDRUSE", -5), 1)]
    else:
        out = [(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)]
    if host == "::":
        out.append((socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0))
    return out


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything starts: a port in use is one line."""
    from ..errors import InputError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    for level, option, value in socket_options(host):
        sock.setsockopt(level, option, value)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port") from None
    sock.listen(128)
    return sock


def server(app, sock: socket.socket):
    """A uvicorn server for ``app`` on ``sock`` (quiet: the command says what matters)."""
    import uvicorn

    # No permessage-deflate: frames are raw RGBA or JPEG, and zlib on every one cost the
    # server more CPU than anything but the engines and the face finder.
    # log_config=None: uvicorn's own set-up resets logging and closes every handler the
    # process has (absl's closes the stderr it holds); its warnings reach stderr anyway.
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        ws_max_size=8 << 20,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=3,
    )
    return uvicorn.Server(config)


@contextlib.contextmanager
def in_background(app, sock: socket.socket):
    """Serve ``app`` on a thread while the block runs (cartoon-cam --overlay)."""
    import time

    srv = server(app, sock)  # off the main thread uvicorn leaves the signals to the command
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, name="web-server", daemon=True)
    thread.start()
    while not srv.started and thread.is_alive():
        time.sleep(0.02)
    if not srv.started:
        from ..errors import InputError

        sock.close()
        raise InputError(f"the web server did not start on {sock.getsockname()[:2]}; see the lines above")
    try:
        yield srv
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()
