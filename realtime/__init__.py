"""cartoon-cam: DCT-Net cartoon stylization for webcams, videos and images.

The Python API is what the CLIs use::

    from realtime import Options, Stylizer
    with Stylizer(Options(style="anime")) as stylizer:
        cartoon = stylizer(bgr_image)
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "Options": "realtime.options",
    "MODES": "realtime.options",
    "Stylizer": "realtime.pipeline",
    "Frame": "realtime.records",
    "FileSource": "realtime.sources",
    "CameraSource": "realtime.sources",
    "PlaybackSource": "realtime.sources",
    "open_live": "realtime.sources",
    "Stream": "realtime.stream",
    "VideoFileSink": "realtime.sinks",
    "VirtualCameraSink": "realtime.sinks",
    "MemorySink": "realtime.sinks",
    "CartoonError": "realtime.errors",
}
__all__ = list(_API)


def __getattr__(name: str):
    """Import on first use, so `import realtime` stays light for the CLIs."""
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")
