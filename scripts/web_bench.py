"""The web paths' speed (``bench.py --only web``), as the user gets it: the API's photo round
trip beside the CLI's warm per-image time (interleaved, medians), the browser's Live tab on a
fake 640x480 camera (fps and latency read from the page), and the overlay page's received
frame rate from a 25 fps source. Server and Chromium share this machine's cores, as they do
on a user's one machine."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from realtime.image_file import stylize_file
from realtime.options import MODES, Options, in_mode
from realtime.pipeline import Stylizer
from realtime.sources import PlaybackSource
from realtime.stream import Stream
from realtime.web import bind, in_background
from realtime.web.app import create_app
from realtime.web.live import Channel, Feed
from realtime.web.studio import Look, Studio
from realtime.web.uploads import Limits

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"  # Debian's
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photo_round_trip(options: Options, portrait: Path, repeat: int) -> dict:
    """``cartoon-image``'s warm time per file (read, stylize, write PNG) against
    ``POST /api/v1/image`` on the same photo, alternated so drift hits both alike."""
    studio = Studio(options, Limits())
    studio.warm()
    port = _port()
    cli, api = [], []
    with (
        tempfile.TemporaryDirectory() as tmp,
        Stylizer(options) as stylizer,
        in_background(create_app(studio), bind("127.0.0.1", port)),
        httpx.Client(timeout=120) as client,
    ):
        data = portrait.read_bytes()
        stylize_file(stylizer, portrait, Path(tmp) / "warm.png", None, options.max_pixels)
        client.post(f"http://127.0.0.1:{port}/api/v1/image", files={"file": ("p.png", data)})
        for i in range(repeat):
            t = time.perf_counter()
            stylize_file(stylizer, portrait, Path(tmp) / f"{i}.png", None, options.max_pixels)
            cli.append(time.perf_counter() - t)
            t = time.perf_counter()
            r = client.post(f"http://127.0.0.1:{port}/api/v1/image", files={"file": ("p.png", data)})
            api.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
    studio.close()
    c, a = statistics.median(cli), statistics.median(api)
    return {"cli_ms": round(c * 1000, 1), "api_ms": round(a * 1000, 1), "api_x_cli": round(a / c, 3)}


def _y4m(clip: Path, folder: Path) -> Path:
    out = folder / "camera_640x480.y4m"
    if not out.exists():
        cmd = ["ffmpeg", "-v", "error", "-i", str(clip), "-t", "4", "-vf", "scale=640:480", "-pix_fmt", "yuv420p"]
        subprocess.run([*cmd, str(out)], check=True)
    return out


def browser_live(
    options: Options, clip: Path, folder: Path, seconds: float, warm: float = 8.0, job: Path | None = None
) -> dict:
    """The Live tab's page on Chromium's fake camera (the clip at 640x480): frames drawn per
    second and the page's own latency (capture to cartoon drawn), sampled each second;
    ``job``: with this video stylized by the job queue meanwhile (restarted as it ends)."""
    from playwright.sync_api import sync_playwright

    camera = _y4m(clip, folder)
    studio = Studio(options, Limits())
    studio.live_restyler()
    port = _port()
    with in_background(create_app(studio), bind("127.0.0.1", port)), sync_playwright() as pw:
        extra = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
        b = pw.chromium.launch(
            executable_path=CHROMIUM, args=[*ARGS, *extra, f"--use-file-for-fake-video-capture={camera}"]
        )
        page = b.new_context(permissions=["camera"]).new_page()
        page.goto(f"http://127.0.0.1:{port}/live?autostart")
        page.wait_for_function("window.liveStats.frames > 0", timeout=120_000)
        jobs = []

        def keep_busy() -> None:
            if job is not None and (not jobs or studio.jobs.state(jobs[-1]).state in ("done", "failed")):
                copy = studio.folder / f"upload-bench-{len(jobs)}"
                copy.write_bytes(job.read_bytes())
                jobs.append(studio.submit_video(copy, job.name, Look()))

        keep_busy()
        time.sleep(warm)
        stats = "[window.liveStats, performance.now() / 1000]"  # timed by the page (see overlay)
        first, pt0 = page.evaluate(stats)
        t0, latencies = time.monotonic(), []
        while time.monotonic() - t0 < seconds:
            time.sleep(1)
            keep_busy()
            latencies.append(page.evaluate("window.liveStats.latencyMs"))
        last, pt1 = page.evaluate(stats)
        frames_done = sum(studio.jobs.state(j).frames_done for j in jobs)
        b.close()
    studio.close()
    return {
        "size": "640x480",
        "job_frames_meanwhile": frames_done,
        "fps": round((last["frames"] - first["frames"]) / (pt1 - pt0), 2),
        "sent_fps": round((last["sent"] - first["sent"]) / (pt1 - pt0), 2),
        "latency_ms_median": round(statistics.median(latencies), 1),
        "latency_ms_max_sample": round(max(latencies), 1),
    }


def overlay(options: Options, clip: Path, seconds: float, warm: float = 6.0) -> dict:
    """A 25 fps clip played live through the overlay's stream (heads alone, transparent) to
    the /overlay page: frames made per second (the server's clock) and frames the page drew
    per second (the page's clock)."""
    from playwright.sync_api import sync_playwright

    o, _ = in_mode(options.replace(background="transparent"), MODES["live"])
    studio = Studio(o, Limits())
    channel = Channel()
    port = _port()
    with (
        in_background(create_app(studio, channel, ui=False), bind("127.0.0.1", port)),
        sync_playwright() as pw,
        PlaybackSource(clip, loop=True) as source,
    ):
        import threading

        restyler = studio.live_restyler()
        stop = threading.Event()
        runner = threading.Thread(
            target=lambda: Stream(restyler).run(source, [Feed(channel)], should_stop=stop.is_set), daemon=True
        )
        runner.start()
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = b.new_page(viewport={"width": 640, "height": 360})
        page.goto(f"http://127.0.0.1:{port}/overlay")
        page.wait_for_function("window.overlayStats.frames > 0", timeout=120_000)
        time.sleep(warm)
        # Each count with its own side's clock: a page.evaluate can take a second or more to
        # answer on these loaded cores, so the page's count is timed by the page.
        counted = "[window.overlayStats.frames, performance.now() / 1000]"
        (f0, pt0), p0, t0 = page.evaluate(counted), channel.published, time.monotonic()
        time.sleep(seconds)
        (f1, pt1), p1, t1 = page.evaluate(counted), channel.published, time.monotonic()
        b.close()
        stop.set()
        runner.join(timeout=10)
    studio.close()
    return {
        "source_fps": round(source.fps, 2),
        "stream_fps": round((p1 - p0) / (t1 - t0), 2),
        "page_fps": round((f1 - f0) / (pt1 - pt0), 2),
    }


def transport_costs(clip: Path, n: int = 50) -> dict:
    """The server's codec work per 640x480 frame of the browser Live path, both ways (a
    camera frame in, a cartoon out): JPEG over a WebSocket, or VP8 / H.264 as WebRTC
    (aiortc's own encoders and decoders) would spend it."""
    import fractions
    import sys

    import av
    import cv2
    from aiortc.codecs import get_decoder, get_encoder
    from aiortc.codecs.h264 import H264PayloadDescriptor
    from aiortc.codecs.vpx import vp8_depayload
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from media import frames_of

    frames = frames_of(clip, n, (640, 480))
    t = time.perf_counter()
    for f in frames:
        cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 80])[1], cv2.IMREAD_COLOR)
    out = {"jpeg_websocket_ms": round((time.perf_counter() - t) / n * 1000, 2)}
    h264 = {"packetization-mode": "1", "level-asymmetry-allowed": "1", "profile-level-id": "42e01f"}
    for name, mime, params, depayload in (
        ("vp8_webrtc_ms", "video/VP8", {}, vp8_depayload),
        ("h264_webrtc_ms", "video/H264", h264, lambda p: H264PayloadDescriptor.parse(p)[1]),
    ):
        codec = RTCRtpCodecParameters(mimeType=mime, clockRate=90000, payloadType=96, parameters=params)
        enc, dec, spent = get_encoder(codec), get_decoder(codec), 0.0
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="bgr24").reformat(format="yuv420p")
            vf.pts, vf.time_base = i * 3600, fractions.Fraction(1, 90000)
            t = time.perf_counter()
            payloads, stamp = enc.encode(vf, force_keyframe=i == 0)
            dec.decode(JitterFrame(data=b"".join(depayload(p) for p in payloads), timestamp=stamp))
            spent += time.perf_counter() - t
        out[name] = round(spent / n * 1000, 2)
    return out


def web_bench(model_dir: Path, face_model: Path, assets: Path, folder: Path, seconds: float, repeat: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    base = Options(model_dir=model_dir, face_model=face_model, quiet=True)
    clip = assets / "media/classroom_720p25.mp4"
    small = folder / "classroom_480p25.mp4"
    if not small.exists():
        cmd = ["ffmpeg", "-v", "error", "-i", str(clip), "-vf", "scale=640:480", "-c:v", "libx264", "-crf", "18"]
        subprocess.run([*cmd, str(small)], check=True)
    return {
        "photo": photo_round_trip(base, assets / "media/portrait_1024.png", repeat),
        "browser_live": browser_live(base, clip, folder, seconds),
        "browser_live_with_job": browser_live(base, clip, folder, seconds, job=clip),
        "transport": transport_costs(clip),
        "overlay": overlay(base, clip, seconds),
        "overlay_480p": overlay(base, small, seconds),
    }
