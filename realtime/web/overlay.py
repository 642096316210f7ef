"""The overlay server of ``cartoon-cam --overlay``: an OBS Browser Source page showing a
live stream run elsewhere, and ``POST /api/v1/live`` to change its look while it runs."""

from __future__ import annotations

from contextlib import ExitStack

from ..options import Options


def open_overlay(stack: ExitStack, options: Options, port: int, given: frozenset[str] = frozenset()):
    """Serve the overlay on 127.0.0.1:``port`` for as long as ``stack`` is open. Returns the
    stream's sink (the pages' channel), the stylizer the stream must run (the one the API
    restyles) and the page's address."""
    from . import bind, in_background
    from .app import create_app, guarded
    from .live import Channel
    from .studio import Studio
    from .uploads import Limits

    sock = bind("127.0.0.1", port)
    studio = Studio(options, Limits(pixels=options.max_pixels), given)  # it has no upload routes
    stack.callback(studio.close)
    channel = Channel()
    app = guarded(create_app(studio, channel, ui=False), studio.limits, "127.0.0.1")
    stack.enter_context(in_background(app, sock))
    return channel, studio.live_restyler(), f"http://127.0.0.1:{port}/overlay"
