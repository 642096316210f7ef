"""``cartoon-web``'s server: the app on a socket until a signal, every upload and result
removed when it stops."""

from __future__ import annotations

import sys
import threading

from ..errors import InputError
from ..options import Options
from .uploads import Limits


def parse_auth(text: str | None) -> tuple[str, str] | None:
    """``USER:PASSWORD`` as given to --auth."""
    if text is None:
        return None
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise InputError("--auth takes USER:PASSWORD, e.g. --auth me:a-long-secret")
    return user, password


def serve(
    options: Options,
    limits: Limits,
    host: str,
    port: int,
    interrupts,
    auth: tuple[str, str] | None = None,
    given: frozenset[str] = frozenset(),
    log=None,
) -> None:
    """Serve the web app on ``host``:``port`` until ``interrupts`` stops it."""
    from . import bind, in_background
    from .app import LOOPBACK, create_app, guarded
    from .studio import Studio

    sock = bind(host, port)
    studio = Studio(options, limits, given, log=log)
    try:
        if host not in LOOPBACK:
            lock = "" if auth else "; add --auth USER:PASSWORD"
            print(f"cartoon-web: warning: listening on {host}: other machines can reach it{lock}", file=sys.stderr)
        studio.warm()
        app = guarded(create_app(studio), studio.limits, host, auth)
        stop = threading.Event()
        with in_background(app, sock), interrupts.running(lambda signum: stop.set()):
            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            shown = f"[{shown}]" if ":" in shown else shown
            print(f"cartoon-web: open http://{shown}:{port}/ (Ctrl-C stops)", flush=True)
            while not stop.wait(0.5):
                pass
    finally:
        studio.close()  # every upload and result removed
