"""cartoon-cam: DCT-Net cartoon stylization for webcams, videos and images.

The Python API is what the CLIs use::

    from realtime import Options, Stylizer
    with Stylizer(Options(style="anime")) as stylizer:
        cartoon = stylizer(bgr_image)

and a whole job, as the commands run it::

    from realtime import Options, run_video
    report = run_video(Options(), Path("in.mp4"), Path("out.mp4"))
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
    "run_images": "realtime.runners.images",
    "run_video": "realtime.runners.video",
    "run_live": "realtime.runners.live",
}
__all__ = list(_API)


def __getattr__(name: str):
    """Import on first use, so `import realtime` stays light for the CLIs."""
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")
