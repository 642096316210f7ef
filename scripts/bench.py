"""Benchmark the DCT-Net generator on every backend and precision present, and the video
pipeline against the official per-frame flow.

Prints tables and writes JSON. Generator: per (backend, precision, batch, height, width)
the median milliseconds per call and the PSNR against FP32 (the PyTorch port), beside
TensorFlow's figures on the same 2-core machine (docs/design.md §1.5). Video: frames per second and
flicker (``realtime.quality``) on the first frames of the classroom clip, for the official
per-frame flow, the background alone, and our presets; and the identity model's PSNR
through the smoothed pipeline. Medians, not means: these machines are noisy.

    python scripts/bench.py --json bench-results/bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path
from unittest import mock

import av
import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from realtime.calibration import calibration_images
from realtime.engine import EngineSpec, backend_names, get_backend, precision_names
from realtime.engine_cache import load_engine
from realtime.faces import FaceFinder
from realtime.memory import limit_malloc_arenas
from realtime.models import find_model_files
from realtime.options import MODES, Options, settle
from realtime.pipeline import Stylizer
from realtime.quality import FLOWS, Motion, flicker, motion, psnr, validate
from realtime.sinks import Sink, VideoFileSink
from realtime.sources import FileSource
from realtime.stream import Stream

VIDEO_PRESET, LIVE_PRESET = dict(MODES["file"].preset), dict(MODES["live"].preset)

# TensorFlow 1 frozen graph on this kind of 2-core machine (docs/design.md §1.5), milliseconds per call.
TENSORFLOW_MS = {(1, 288, 288): 123.0, (1, 720, 1280): 1290.0}
CASES = [(1, 288, 288, "head"), (4, 288, 288, "head"), (1, 720, 1280, "background")]


def _inputs(batch: int, h: int, w: int) -> np.ndarray:
    """Real content (the packaged calibration photos), not noise: INT8 error depends on it."""
    pool = calibration_images("head" if h == 288 else "background")
    return np.stack([cv2.resize(pool[(i * 5) % len(pool)], (w, h), interpolation=cv2.INTER_AREA) for i in range(batch)])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _time(engine, x: np.ndarray, repeat: int) -> tuple[float, np.ndarray]:
    out = engine(x)  # warm-up (and shape-specific compilation)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        engine(x)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def combos(device_filter: str | None) -> list[EngineSpec]:
    out = []
    for name in backend_names():
        b = get_backend(name)
        for device in ("cpu", "cuda"):
            if b.unavailable(device) or (device_filter and device != device_filter):
                continue
            for p in precision_names():
                if p in b.precisions and not (name == "torch" and p != "fp32" and device == "cpu"):
                    out.append(EngineSpec(name, p, device))
    return out


def generator_bench(args, console: Console) -> dict:
    files = find_model_files(args.model_dir)
    rows = []
    for batch, h, w, role in CASES:
        x = _inputs(batch, h, w)
        graph = files.head if role == "head" else files.background
        # The reference: FP32 on the CPU, which the tests prove against TensorFlow (the PyTorch
        # port where torch is installed, else OpenVINO).
        exact = "torch" if get_backend("torch").unavailable("cpu") is None else "openvino"
        ref = load_engine(graph, EngineSpec(exact, "fp32", "cpu", role), log=None)(x)
        for spec in combos(args.device):
            spec = EngineSpec(spec.backend, spec.precision, spec.device, role)
            try:
                engine = load_engine(graph, spec, log=console.print)
            except Exception as e:  # a backend that cannot build this case is reported, not fatal
                console.print(f"[yellow]skip {spec}: {e}")
                continue
            repeat = args.repeat if h == 288 else max(3, args.repeat // 3)
            ms, out = _time(engine, x, repeat)
            engine.close()
            rows.append(
                {
                    "backend": spec.backend,
                    "precision": spec.precision,
                    "device": spec.device,
                    "batch": batch,
                    "height": h,
                    "width": w,
                    "ms_median": round(ms, 2),
                    "ms_per_image": round(ms / batch, 2),
                    "psnr_vs_fp32": round(min(_psnr(out, ref), 99.0), 2),
                    "speedup_vs_tensorflow": round(TENSORFLOW_MS[(1, h, w)] * batch / ms, 2),
                }
            )
            console.print(f"{spec.backend} {spec.precision} {spec.device} {batch}x{h}x{w}: {ms:.1f} ms")

    console.print(
        _table(
            "DCT-Net generator (median ms per call; TensorFlow: 123 ms at 288, 1290 ms at 720x1280)",
            ("backend", "precision", "device", "shape", "ms", "ms/image", "x TF", "PSNR vs fp32"),
            [
                (
                    r["backend"],
                    r["precision"],
                    r["device"],
                    f"{r['batch']}x{r['height']}x{r['width']}",
                    f"{r['ms_median']:.1f}",
                    f"{r['ms_per_image']:.1f}",
                    f"{r['speedup_vs_tensorflow']:.2f}",
                    f"{r['psnr_vs_fp32']:.1f}",
                )
                for r in rows
            ],
        )
    )
    return {"generator": rows, "tensorflow_ms": {f"{b}x{h}x{w}": v for (b, h, w), v in TENSORFLOW_MS.items()}}


def _clip(path: Path, n: int) -> list:
    with FileSource(path) as src:
        return [f for _, f in zip(range(n), src, strict=False)]


def _boxes(frames, face_model: Path) -> list[tuple[int, int, int, int]]:
    """Each source frame's face-oval box (the flicker metric's region)."""
    out: list[tuple[int, int, int, int]] = []
    with FaceFinder(face_model) as finder:
        for f in frames:
            faces = finder.find(f.image)
            out.append(tuple(int(v) for v in faces[0].box()) if faces else out[-1])
    return out


QUALITY_WIDTH = 640  # the flicker measure runs on copies this wide (flow at 720p adds time, not truth)


def _encode(o: Options, frames: list, out: Path, serial: bool) -> float:
    """Run ``o`` over ``frames`` into the video file ``out`` as cartoon-video writes it; the
    frames per second, engines loaded and compiled beforehand."""
    mode = "image" if serial else "file"
    with Stylizer(o, mode=mode) as stylizer:
        stylizer.run(frames[0].image)  # warm-up: compile shapes, load models
        h, w = frames[0].image.shape[:2]
        with VideoFileSink(out, w, h, 25.0, frames[0].time_base, None, **o.encoder()) as sink:
            t = time.perf_counter()
            if serial:  # the official flow: each frame on its own
                for f in frames:
                    sink.send(f, stylizer.run(f.image).image)
            else:
                Stream(stylizer).run(frames, [sink])
            seconds = time.perf_counter() - t
    return len(frames) / seconds


def _settled(o: Options) -> Options:
    """The options as cartoon-video settles them (what the preset gives way to)."""
    return settle(o, MODES["file"], frozenset({"smoothing"}))[0]


def _decoded(path: Path) -> list[np.ndarray]:
    with FileSource(path) as source:
        return [f.image for f in source]


def _small(images: list[np.ndarray]) -> list[np.ndarray]:
    h, w = images[0].shape[:2]
    size = (QUALITY_WIDTH, round(h * QUALITY_WIDTH / w))
    return [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in images]


class _Unsmoothed:
    """Stands in for the output smoothing: the composite as it is."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, source, out, image):
        return out


ABLATIONS = {  # the defaults with one part of the smoothing taken out
    "defaults without the output smoothing": lambda: mock.patch("realtime.stream.FlowSmoother", _Unsmoothed),
    "defaults, heads carried but not filtered": lambda: mock.patch("realtime.stream.files.HEAD_WEIGHT", 0.0),
    "defaults, heads neither filtered nor carried": lambda: mock.patch(
        "realtime.stream.files.HeadCarrier", lambda *a, **k: None
    ),
}


def video_bench(
    model_dir: Path, identity_dir: Path, face_model: Path, clip: Path, console: Console, lengths=(60, 126)
) -> dict:
    """cartoon-video against the official per-frame flow: speed, flicker on the encoded files
    (two flows, whole frame and face box, over the first frames and the whole clip, each next
    to the official flow's), and the identity model's fidelity, every frame of the file."""
    import tempfile

    frames = _clip(clip, max(lengths))
    sources = _small([f.image for f in frames])
    scale = QUALITY_WIDTH / frames[0].image.shape[1]
    boxes = [tuple(round(v * scale) for v in b) for b in _boxes(frames, face_model)]
    motions = {m: motion(sources, m) for m in FLOWS}

    def prefix(m, n):
        return Motion(m.back[: n - 1], m.valid[: n - 1])

    report: dict = {"quality_width": QUALITY_WIDTH, "validation": {}}
    for method, m in motions.items():
        for region, bx in (("whole", None), ("face", boxes)):
            report["validation"][f"{method}/{region}"] = validate(sources[:60], prefix(m, 60), bx and bx[:60])
    base = Options(model_dir=model_dir, face_model=face_model, quiet=True)
    defaults = _settled(base.replace(**VIDEO_PRESET))
    configs = [
        ("official per-frame flow (fp32, each frame on its own)", base.replace(precision="fp32", smoothing=0.0), True),
        ("--smoothing 0 (the preset otherwise)", _settled(base.replace(**VIDEO_PRESET, smoothing=0.0)), False),
        ("cartoon-video defaults", defaults, False),
        *((name, defaults, False) for name in ABLATIONS),  # what each part of the smoothing buys
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, o, serial) in enumerate(configs):
            with ABLATIONS.get(name, contextlib.nullcontext)():
                fps = _encode(o, frames, Path(tmp) / f"{i}.mp4", serial)
                _encode(o.replace(model_dir=identity_dir), frames, Path(tmp) / f"id{i}.mp4", serial)
            out = _small(_decoded(Path(tmp) / f"{i}.mp4"))
            row = {"config": name, "fps": round(fps, 3)}
            for n in lengths:
                for method, m in motions.items():
                    for region, bx in (("whole", None), ("face", boxes)):
                        row[f"{method}/{region}/{n}"] = round(flicker(out[:n], prefix(m, n), bx and bx[:n]), 3)
            rows.append(row)
            console.print(row)
            scores = [psnr(a.image, b) for a, b in zip(frames, _decoded(Path(tmp) / f"id{i}.mp4"), strict=True)]
            row["identity_psnr_mean"] = round(float(np.mean(scores)), 2)
            row["identity_psnr_min"] = round(min(scores), 2)
        report["live"] = live_quality(
            model_dir, identity_dir, face_model, clip, frames, Path(tmp), motions, boxes, console
        )
    official = rows[0]
    for r in rows:
        r["speedup_vs_official"] = round(r["fps"] / official["fps"], 2)
        for key in [k for k in r if k.count("/") == 2]:
            r[f"{key}/x_official"] = round(r[key] / official[key], 3)
    report["rows"] = rows
    report["source_flicker"] = {
        f"{method}/{region}/{n}": round(flicker(sources[:n], prefix(m, n), bx and bx[:n]), 3)
        for n in lengths
        for method, m in motions.items()
        for region, bx in (("whole", None), ("face", boxes))
    }
    return report


class IndexSink(Sink):
    """Notes which source frame each delivered frame is (a recording holds them in order)."""

    def __init__(self):
        self.indices: list[int] = []

    def send(self, frame, image) -> None:
        self.indices.append(frame.index)


LIVE_QUALITY_SECONDS = 12.0


def live_quality(model_dir, identity_dir, face_model, clip, frames, tmp: Path, motions, boxes, console) -> dict:
    """The file figures for cartoon-cam: a --record of the clip (``frames``: all of it) played
    live and looped, each
    recorded frame matched to its source frame; flicker measured against the official flow's
    file (``tmp/0.mp4``) laid out on the same frames (a loop's jump back to frame 0 counts
    for both), the identity model's recording against the source."""
    n = len(frames)
    with FileSource(clip) as whole:
        if sum(1 for _ in whole) != n:
            raise ValueError(f"{clip.name}: measure the live figures on the whole clip ({n} frames given)")
    official = _small(_decoded(tmp / "0.mp4"))
    sources = _small([f.image for f in frames])
    row: dict = {"config": f"cartoon-cam --record, clip looped live ({LIVE_QUALITY_SECONDS:.0f} s)"}
    for name, model in (("random", model_dir), ("identity", identity_dir)):
        watch = IndexSink()
        record = tmp / f"live_{name}.mp4"
        stats = live_bench(model, face_model, clip, LIVE_QUALITY_SECONDS, Console(quiet=True), record, watch=[watch])
        recorded = _decoded(record)
        order = [i % n for i in watch.indices]
        if len(recorded) != len(order):
            raise RuntimeError(f"the recording has {len(recorded)} frames, {len(order)} were sent")
        if name == "identity":
            scores = [psnr(frames[i].image, im) for i, im in zip(order, recorded, strict=True)]
            row["identity_psnr_mean"] = round(float(np.mean(scores)), 2)
            row["identity_psnr_min"] = round(float(min(scores)), 2)
            continue
        row["fps"] = stats["fps"]
        out = _small(recorded)
        matched = [sources[i] for i in order]
        for method in motions:
            m = motion(matched, method)
            for region, bx in (("whole", None), ("face", boxes)):
                mb = bx and [bx[i] for i in order]
                ours = flicker(out, m, mb)
                row[f"{method}/{region}"] = round(ours, 3)
                row[f"{method}/{region}/x_official"] = round(ours / flicker([official[i] for i in order], m, mb), 3)
    console.print(row)
    return row


class FromFirstFrame(Sink):
    """Restarts a ``ThreadCpu`` when the first frame comes out, and counts the frames after."""

    def __init__(self, cpu: ThreadCpu):
        self.cpu, self.frames = cpu, 0

    def send(self, frame, image: np.ndarray) -> None:
        if self.frames == 0:
            self.cpu.restart()
        self.frames += 1


class DeviceSink(Sink):
    """Stands in for a virtual camera: copies each frame into one device buffer (keeping
    every 720p frame, as MemorySink does, would measure the allocator, not the pipeline)."""

    def __init__(self):
        self.buffer: np.ndarray | None = None

    def send(self, frame, image: np.ndarray) -> None:
        if self.buffer is None:
            self.buffer = np.empty_like(image)
        np.copyto(self.buffer, image)


def thread_group(name: str) -> str:
    """A Python thread's row: its own name, pools and anonymous threads together."""
    if name.startswith("ThreadPoolExecutor"):
        return "python pools"
    return "other python" if re.fullmatch(r"Thread-\d+.*", name) else name


def native_group(tid: int) -> str:
    """A thread Python did not start, by the name its library gave it (Linux's comm)."""
    try:
        comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
    except OSError:
        comm = ""
    if comm == "drishti":  # MediaPipe's graph threads: the face landmarker's work
        return "faces (MediaPipe pool)"
    if comm.startswith("av:"):  # FFmpeg's decoder threads
        return "decode (FFmpeg)"
    return "native"  # unnamed: OpenVINO's workers (the engines) and OpenCV's


class ThreadCpu:
    """CPU seconds each thread spent over a run (utime + stime from Linux's /proc/self/task,
    sampled every 0.2 s, so threads that end are counted too), by Python thread name; the
    threads Python did not start (OpenVINO's, MediaPipe's, XNNPACK's pools) are "native".
    Thread CPU time, not wall time: it holds on a busy machine."""

    def __init__(self, every: float = 0.2):
        import threading

        self.every, self._stop = every, threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-cpu", daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.first: dict[int, float] = {}
        self.last: dict[int, tuple[str, float]] = {}

    def _read(self) -> dict[int, float]:
        out = {}
        for task in Path("/proc/self/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended between the listing and the read
                continue
            out[int(task.name)] = (int(fields[11]) + int(fields[12])) / self._tick
        return out

    def _sample(self) -> None:
        import threading

        names = {t.native_id: thread_group(t.name) for t in threading.enumerate()}
        for tid, cpu in self._read().items():
            if tid not in self.last:
                self.last[tid] = (names.get(tid) or native_group(tid), cpu)
            self.last[tid] = (self.last[tid][0], cpu)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self) -> ThreadCpu:
        self.first = self._read() if Path("/proc/self/task").is_dir() else {}
        if self.first:
            self._thread.start()
        return self

    def restart(self) -> None:
        """Count from now (the first frame out): set-up, builds and priming are not per frame."""
        if self.first:
            self._sample()
            self.first = {tid: cpu for tid, (_, cpu) in self.last.items()}

    def __exit__(self, *exc) -> None:
        if self.first:
            self._stop.set()
            self._thread.join()
            self._sample()

    def by_name(self) -> dict[str, float]:
        """CPU seconds over the run per thread name (the sampler's own left out)."""
        out: dict[str, float] = {}
        for tid, (name, cpu) in self.last.items():
            if name != "bench-cpu":
                out[name] = out.get(name, 0.0) + cpu - self.first.get(tid, 0.0)
        return out


class MemoryWatch:
    """The process's resident memory, sampled every second on its own thread."""

    def __init__(self):
        import threading

        self.samples: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    @staticmethod
    def rss_mib() -> float:
        """Resident MiB (Linux's /proc; elsewhere NaN: the memory rows are left empty)."""
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, AttributeError, ValueError):
            return float("nan")

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append((time.monotonic() - self._t0, self.rss_mib()))

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def growth(self, warm_up: float = 10.0) -> dict:
        """RSS after warm-up and at the end, and the growth between, in MiB and percent."""
        after = [m for t, m in self.samples if t >= warm_up] or [m for _, m in self.samples]
        if not after:
            return {}
        start, end = after[0], after[-1]
        return {
            "rss_mib_after_warm_up": round(start, 1),
            "rss_mib_end": round(end, 1),
            "rss_mib_peak": round(max(after), 1),
            "rss_growth_pct": round(100 * (end - start) / start, 2),
            "rss_mib_each_minute": [round(m, 1) for t, m in self.samples if round(t) % 60 == 0],
        }


def live_bench(
    model_dir: Path,
    face_model: Path,
    clip: Path,
    seconds: float,
    console: Console,
    record: Path | None = None,
    warm_up: float = 10.0,
    watch: list | None = None,
) -> dict:
    """cartoon-cam's pipeline on a clip played live and looped, as a camera would; ``record``
    also records to that file, as ``--record`` does; ``watch``: more sinks."""
    from realtime.runners.live import run_live

    o = Options(model_dir=model_dir, face_model=face_model, quiet=True, **LIVE_PRESET)
    with FileSource(clip) as probe:
        fps = probe.fps
    o = o.replace(device=str(clip), loop=True, virtual="off", record=record, max_frames=int(seconds * fps))
    with MemoryWatch() as memory, ThreadCpu() as cpu:
        counted = FromFirstFrame(cpu)
        report = run_live(o, sinks=(DeviceSink(), counted, *(watch or [])))
    out = {
        "clip": clip.name,
        **report.summary,
        "captured": report.captured,
        "source_fps": round(report.camera_fps, 2),
        "references": report.references,
        "dropped_pct": round(
            100 * report.summary["dropped"] / max(report.summary["frames"] + report.summary["dropped"], 1), 2
        ),
        "queue_peaks": report.queue_peaks,
        **memory.growth(warm_up),
        "stage_ms_median": report.stage_ms,
        # per source frame after the first out: those shown and those dropped
        **frame_path_cpu(
            cpu,
            counted.frames + report.summary["dropped"],
            landmarker_cpu_ms(face_model, clip, LIVE_PRESET["work_size"]),
        ),
    }
    console.print(f"live: {out}")
    return out


def cost_table(runs: list[dict]) -> Table:
    """The frame path's CPU per captured frame, thread by thread (one per stage), per clip."""
    names = sorted({n for r in runs for n, v in r["cpu_ms_per_frame"].items() if v >= 0.05},
                   key=lambda n: (n in ENGINE_THREADS, n))  # fmt: skip
    rows = [(n, *(f"{r['cpu_ms_per_frame'].get(n, 0):.1f}" for r in runs)) for n in names]
    rows += [
        ("frame path", *(f"{r['frame_path_cpu_ms']:.1f}" for r in runs)),
        ("landmarker alone", *(f"{r['landmarker_cpu_ms']:.1f}" for r in runs)),
        ("frame path / landmarker", *(f"{r['frame_path_x_landmarker']:.2f}" for r in runs)),
    ]
    return _table(
        "live: thread CPU ms per captured frame (engines and native pools are beside the frame path)",
        ("thread", *(r["clip"] for r in runs)),
        rows,
    )


# beside the frame path: the engines' thread, and the unnamed native pools (mostly OpenVINO's)
ENGINE_THREADS = ("engines", "native")


def frame_path_cpu(cpu: ThreadCpu, frames: int, landmarker_ms: float) -> dict:
    """Each thread's CPU milliseconds per captured frame; the frame path's total (every
    thread but the engines'), and that total over the landmarker's own cost on the same
    frames: a ratio that holds from machine to machine where milliseconds do not."""
    per = {name: round(1000 * sec / max(frames, 1), 2) for name, sec in sorted(cpu.by_name().items())}
    total = round(sum(v for k, v in per.items() if k not in ENGINE_THREADS), 2)
    return {
        "cpu_ms_per_frame": per,
        "frame_path_cpu_ms": total,
        "landmarker_cpu_ms": landmarker_ms,
        "frame_path_x_landmarker": round(total / landmarker_ms, 2) if landmarker_ms else None,
    }


def landmarker_cpu_ms(face_model: Path, clip: Path, work_size: int, frames: int = 100) -> float:
    """The face landmarker alone (VIDEO mode, every frame) on the clip's first frames at the
    live work size: CPU milliseconds per frame, all its threads."""
    from realtime.frames import shrink
    from realtime.pipeline import work_shape

    images = []
    for f in _clip(clip, frames):
        wh, ww = work_shape(*f.image.shape[:2], work_size)
        images.append(shrink(f.image, ww, wh))
    with FaceFinder(face_model, video=True) as finder:
        finder.find(images[0], 0)  # its graph starts
        start = time.process_time()
        for i, image in enumerate(images[1:], 1):
            finder.find(image, i * 40)
        return round(1000 * (time.process_time() - start) / max(len(images) - 1, 1), 2)


def ray_clip(assets: Path, folder: Path, seconds: float = 30.0, gop: int = 50, size=(1280, 720)) -> Path:
    """The classroom clip looped to about ``seconds``, 25 fps at ``size``, a keyframe every ``gop`` frames."""
    path = folder / f"classroom_{seconds:.0f}s_gop{gop}_{size[1]}p.mp4"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    frames = _clip(assets / "media/classroom_720p25.mp4", 10**6)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = *size, "yuv420p"
        v.time_base = v.codec_context.time_base = Fraction(1, 12800)
        v.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "crf": "16", "preset": "veryfast"}
        for i in range(round(seconds * 25)):
            image = cv2.resize(frames[i % len(frames)].image, size, interpolation=cv2.INTER_AREA)
            f = av.VideoFrame.from_ndarray(image, format="bgr24")
            f.pts, f.time_base = i * 512, Fraction(1, 12800)
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    return path


def ray_bench(model_dir: Path, face_model: Path, assets: Path, folder: Path, console: Console) -> dict:
    """cartoon-video on a 30 s clip: one process, then in segments on a local Ray (2 CPUs)
    with 1 and 2 workers; and what Ray itself costs (start-up, a task's round trip, the
    frames each segment runs twice for warm-up and look-ahead)."""
    import tempfile

    import ray

    from realtime.cluster import video_segments
    from realtime.segments import plan, scan, warm_up

    clip = ray_clip(assets, folder)
    gop = 50  # the clip's own keyframes, so 8 segments have places to be cut (250 would allow 3)
    o = _settled(Options(model_dir=model_dir, face_model=face_model, quiet=True, keyint=gop, **VIDEO_PRESET))
    frames = len(scan(clip).pts)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        from realtime.cli import video_main

        t = time.perf_counter()
        args = ["--model-dir", str(model_dir), "--face-model", str(face_model), "--quiet", "--keyint", str(gop)]
        assert video_main([str(clip), str(Path(tmp) / "one.mp4"), *args]) == 0
        single = time.perf_counter() - t
        runs.append({"run": "one process", "seconds": round(single, 1)})
        t = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        start_up = time.perf_counter() - t

        @ray.remote
        def nothing(x):
            return x

        ray.get(nothing.remote(0))
        trips = []
        for _ in range(50):
            t = time.perf_counter()
            ray.get(nothing.remote(0))
            trips.append(time.perf_counter() - t)
        try:
            for workers, segments in ((1, 4), (2, 4), (2, 8)):
                t = time.perf_counter()
                out = Path(tmp) / f"ray{workers}_{segments}.mp4"
                video_segments(ray, o, clip, out, lambda *_: None, segments, workers)
                seconds = round(time.perf_counter() - t, 1)
                runs.append({"run": f"Ray, {workers} worker(s), {segments} segments", "seconds": seconds})
        finally:
            ray.shutdown()
    for r in runs:
        r["fps"] = round(frames / r["seconds"], 2)
        r["x_single"] = round(single / r["seconds"], 2)
    parts = {n: plan(scan(clip), n, o.background_interval, warm_up(o), o.keyint) for n in (4, 8)}
    extra = {n: sum(s.stop - s.warm - (s.end - s.start) for s in p) for n, p in parts.items()}
    overhead = {
        "start_up_s": round(start_up, 2),
        "task_round_trip_ms_median": round(1000 * float(np.median(trips)), 2),
        "extra_frames_per_split": {f"{n} segments": f"{e} ({100 * e / frames:.1f}%)" for n, e in extra.items()},
        "warm_up_frames": warm_up(o),
    }
    return {"clip": clip.name, "frames": frames, "runs": runs, "overhead": overhead, "cpu": _cpu_name()}


def seam_bench(model_dir: Path, face_model: Path, assets: Path, folder: Path, console: Console, warm_ups=None) -> dict:
    """Whether a video cut into segments shows its seams: the 30 s clip (at 640x360, a
    keyframe every 50 frames), ``cartoon-video`` defaults, in one process and in up to 4 segments
    stylized one after another by one Stylizer (a Ray worker's work, without Ray), for
    several warm-ups; written losslessly (the stylization alone) and at the default --crf.
    Per frame the warping error (random model: the flicker measure) and the PSNR against the
    one-process file; near a seam (the 5 frames either side) against the rest, and, for what
    the encoder does at any keyframe, near the one-process file's own keyframes."""
    import tempfile

    from realtime.cli import video_main
    from realtime.quality import warping_errors
    from realtime.segments import encoder_for, join, plan, scan, stylize_segment, warm_up

    clip = ray_clip(assets, folder, size=(640, 360))
    s = scan(clip)
    with FileSource(clip) as src:
        m = motion([f.image for f in src])

    def near(cuts) -> tuple[list[int], list[int]]:
        close = sorted({i for c in cuts for i in range(c - 5, c + 5)})
        return close, [i for i in range(1, len(s.pts)) if i not in close]

    def mean(errors, frames) -> float:
        return float(np.mean([errors[i - 1] for i in frames]))

    rows = []
    for crf in (0, Options().crf):
        o = _settled(Options(model_dir=model_dir, face_model=face_model, quiet=True, crf=crf, **VIDEO_PRESET))
        with tempfile.TemporaryDirectory() as tmp:
            one = Path(tmp) / "one.mp4"
            args = ["--model-dir", str(model_dir), "--face-model", str(face_model), "--quiet", "--crf", str(crf)]
            assert video_main([str(clip), str(one), *args]) == 0
            ones = _decoded(one)
            e_one = warping_errors(ones, m)
            own = [k for k in scan(one).keyframes if k > 0]
            by_own, away = near(own)
            for warm in warm_ups or sorted({0, warm_up(o)}):
                parts = plan(s, 4, o.background_interval, warm, o.keyint)
                seams = [p.start for p in parts[1:]]
                by_seam, rest = near(seams)
                out = Path(tmp) / f"split{warm}.mp4"
                encoder = encoder_for(o, out)
                pieces = [Path(tmp) / f"{warm}_{i}.ts" for i in range(len(parts))]
                t = time.perf_counter()
                with Stylizer(o, mode=MODES["file"]) as stylizer:
                    for seg, piece in zip(parts, pieces, strict=True):
                        stylize_segment(stylizer, clip, seg, piece, s.size, s.fps, s.time_base, encoder)
                join(pieces, out, clip, s.fps, s.time_base, s.size, encoder)
                seconds = time.perf_counter() - t
                splits = _decoded(out)
                e_split = warping_errors(splits, m)
                db = [psnr(a, b) for a, b in zip(ones, splits, strict=True)]
                row = {
                    "crf": crf,
                    "warm_up": warm,
                    "seams": seams,
                    "seconds": round(seconds, 1),
                    "flicker_near_seams": round(mean(e_split, by_seam), 3),
                    "one_process_same_frames": round(mean(e_one, by_seam), 3),
                    "x_one_process_near": round(mean(e_split, by_seam) / mean(e_one, by_seam), 3),
                    "x_one_process_elsewhere": round(mean(e_split, rest) / mean(e_one, rest), 3),
                    # the segmented output's flicker near its seams against elsewhere in it, the
                    # one-process file's on the same frames (what the content alone gives), and
                    # that file's near its own keyframes (what the encoder gives any keyframe)
                    "near_x_elsewhere": round(mean(e_split, by_seam) / mean(e_split, rest), 3),
                    "one_process_near_x_elsewhere": round(mean(e_one, by_seam) / mean(e_one, rest), 3),
                    "one_process_keyframes": own,
                    "one_process_own_keyframes_x_elsewhere": round(mean(e_one, by_own) / mean(e_one, away), 3)
                    if own
                    else None,
                    "psnr_vs_one_near_min": round(float(min(db[i] for i in by_seam)), 2),
                    "psnr_vs_one_elsewhere_median": round(float(np.median([db[i] for i in rest])), 2),
                }
                rows.append(row)
                console.print(row)
    return {"clip": clip.name, "frames": len(s.pts), "default_warm_up": warm_up(o), "rows": rows}


def live_clips(assets: Path, folder: Path) -> list[Path]:
    """The live cases: the classroom clip (one face, 25 fps), two faces at 720p25 (one who
    leaves and comes back every 1.5 s), and one face at 30 fps."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from media import frames_of, two_face_clip, write_video

    folder.mkdir(parents=True, exist_ok=True)
    two = folder / "two_faces_720p25.mp4"
    if not two.exists():
        two_face_clip(assets, two, seconds=12)
    thirty = folder / "classroom_720p30.mp4"
    if not thirty.exists():
        write_video(thirty, frames_of(assets / "media/classroom_720p25.mp4"), fps=30)
    return [assets / "media/classroom_720p25.mp4", two, thirty]


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def _cpu_name() -> str:
    """The CPU's model name (figures from different machines must not be compared)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    assets = Path(os.environ.get("CARTOON_TEST_ASSETS", "../shared"))
    default_models = assets / "models/dctnet/random"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write results here")
    parser.add_argument("--model-dir", type=Path, default=default_models, help=f"graphs (default: {default_models})")
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per case (720p: a third of it, min 3)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="only this device")
    parser.add_argument(
        "--only",
        choices=["generator", "video", "live", "soak", "ray", "seams", "web"],
        help="run one part (the soak, ray, seams and web run only when asked)",
    )
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="how long the soak runs")
    parser.add_argument("--live-seconds", type=float, default=12.0, help="how long to run each live measurement")
    parser.add_argument("--live-clip", type=Path, action="append", help="live: only these clips (default: three cases)")
    args = parser.parse_args(argv)

    console = Console()
    limit_malloc_arenas()  # as the commands do
    results: dict = {"cpu_count": os.cpu_count(), "cpu": _cpu_name()}
    parts = {args.only} if args.only else {"generator", "video", "live"}  # the soak runs only when asked
    face, clip = assets / "models/face_landmarker.task", assets / "media/classroom_720p25.mp4"
    if "generator" in parts:
        results.update(generator_bench(args, console))
    if "video" in parts:
        identity = assets / "models/dctnet/identity"
        video = results["video"] = video_bench(args.model_dir, identity, face, clip, console)
        for key, v in video["validation"].items():
            console.print(f"measure check {key}: {v}")
        regions = [k for k in video["rows"][0] if k.count("/") == 2]
        console.print(
            _table(
                f"cartoon-video on {clip.name}, {args.model_dir.name} model: flicker on the encoded files "
                "(grey levels; x the official flow's) and identity PSNR of the file",
                ("config", "fps", "x official", *regions, "identity dB mean / min"),
                [
                    (
                        r["config"],
                        f"{r['fps']:.2f}",
                        f"{r['speedup_vs_official']:.2f}",
                        *(f"{r[k]:.2f} ({r[k + '/x_official']:.2f})" for k in regions),
                        f"{r['identity_psnr_mean']:.2f} / {r['identity_psnr_min']:.2f}",
                    )
                    for r in video["rows"]
                ],
            )
        )
        console.print(f"the source's own flicker (the floor): {video['source_flicker']}")
        live = video["live"]
        regions = [k for k in live if k.count("/") == 1]
        console.print(
            _table(
                "the same measures on a cartoon-cam --record (the classroom clip looped live)",
                ("config", "fps", *regions, "identity dB mean / min"),
                [
                    (
                        live["config"],
                        f"{live['fps']:.2f}",
                        *(f"{live[k]:.2f} ({live[k + '/x_official']:.2f})" for k in regions),
                        f"{live['identity_psnr_mean']:.2f} / {live['identity_psnr_min']:.2f}",
                    )
                ],
            )
        )
    if "live" in parts:
        clips = args.live_clip or live_clips(assets, Path("bench-results/clips"))
        results["live"] = [live_bench(args.model_dir, face, c, args.live_seconds, console) for c in clips]
        console.print(
            _table(
                f"cartoon-cam on clips played live and looped ({args.live_seconds:.0f} s each)",
                ("clip", "fps out", "source fps", "dropped", "p50 ms", "p99 ms", "references", "RSS growth"),
                [
                    (
                        r["clip"],
                        f"{r['fps']:.2f}",
                        f"{r['source_fps']:.2f}",
                        f"{r['dropped_pct']:.1f}%",
                        f"{r['latency_ms_p50']:.0f}",
                        f"{r['latency_ms_p99']:.0f}",
                        str(r["references"]),
                        f"{r.get('rss_growth_pct', float('nan')):+.1f}%",
                    )
                    for r in results["live"]
                ],
            )
        )
        console.print(cost_table(results["live"]))
    if "ray" in parts:
        ray_report = results["ray"] = ray_bench(args.model_dir, face, assets, Path("bench-results/clips"), console)
        console.print(
            _table(
                f"cartoon-video --ray on {ray_report['clip']} ({ray_report['frames']} frames), local Ray on 2 CPUs",
                ("run", "wall s", "fps", "x one process"),
                [
                    (r["run"], f"{r['seconds']:.1f}", f"{r['fps']:.2f}", f"{r['x_single']:.2f}")
                    for r in ray_report["runs"]
                ],
            )
        )
        console.print(f"Ray itself: {ray_report['overhead']}")
    if "seams" in parts:
        seams = results["seams"] = seam_bench(args.model_dir, face, assets, Path("bench-results/clips"), console)
        console.print(
            _table(
                f"segment seams on {seams['clip']} ({seams['frames']} frames, up to 4 segments; "
                f"default warm-up {seams['default_warm_up']} frames)",
                (
                    "crf",
                    "warm-up",
                    "flicker near seams",
                    "x one process near",
                    "x one process elsewhere",
                    "near seams x elsewhere",
                    "one process, same frames",
                    "one process, near its keyframes",
                    "PSNR vs one, near (min)",
                    "elsewhere (median)",
                ),
                [
                    (
                        str(r["crf"]),
                        str(r["warm_up"]),
                        f"{r['flicker_near_seams']:.3f}",
                        f"{r['x_one_process_near']:.3f}",
                        f"{r['x_one_process_elsewhere']:.3f}",
                        f"{r['near_x_elsewhere']:.3f}",
                        f"{r['one_process_near_x_elsewhere']:.3f}",
                        str(r["one_process_own_keyframes_x_elsewhere"]),
                        f"{r['psnr_vs_one_near_min']:.1f}",
                        f"{r['psnr_vs_one_elsewhere_median']:.1f}",
                    )
                    for r in seams["rows"]
                ],
            )
        )
    if "web" in parts:
        from web_bench import web_bench

        web = results["web"] = web_bench(
            args.model_dir, face, assets, Path("bench-results/clips"), args.live_seconds, args.repeat
        )
        p, lv, ov, ov480 = web["photo"], web["browser_live"], web["overlay"], web["overlay_480p"]
        lj, tr = web["browser_live_with_job"], web["transport"]
        console.print(
            _table(
                f"the web paths ({args.model_dir.name} model; server and Chromium on these cores)",
                ("measure", "value", "target"),
                [
                    ("photo: cartoon-image warm, per file", f"{p['cli_ms']:.0f} ms", ""),
                    ("photo: POST /api/v1/image round trip", f"{p['api_ms']:.0f} ms", ""),
                    ("photo: API x CLI", f"{p['api_x_cli']:.3f}", "<= 1.2"),
                    ("browser Live 640x480: fps drawn", f"{lv['fps']:.1f}", ">= 15"),
                    ("browser Live: latency capture -> drawn (median)", f"{lv['latency_ms_median']:.0f} ms", ""),
                    (
                        f"browser Live, a video job running ({lj['job_frames_meanwhile']} job frames): fps drawn",
                        f"{lj['fps']:.1f}",
                        ">= 15",
                    ),
                    ("browser Live, a video job running: latency (median)", f"{lj['latency_ms_median']:.0f} ms", ""),
                    ("server codec work per frame, both ways: JPEG (WebSocket)", f"{tr['jpeg_websocket_ms']} ms", ""),
                    ("... VP8 (WebRTC, aiortc)", f"{tr['vp8_webrtc_ms']} ms", ""),
                    ("... H.264 (WebRTC, aiortc)", f"{tr['h264_webrtc_ms']} ms", ""),
                    ("overlay 720p: frames made per s", f"{ov['stream_fps']:.1f}", ""),
                    (
                        f"overlay 720p page: frames drawn per s (source {ov['source_fps']:.0f})",
                        f"{ov['page_fps']:.1f}",
                        ">= 24",
                    ),
                    ("overlay 640x480: frames made per s", f"{ov480['stream_fps']:.1f}", ""),
                    (
                        f"overlay 640x480 page: frames drawn per s (source {ov480['source_fps']:.0f})",
                        f"{ov480['page_fps']:.1f}",
                        ">= 24",
                    ),
                ],
            )
        )
    if "soak" in parts:
        rec = Path("bench-results/soak-recording.mp4")
        rec.parent.mkdir(parents=True, exist_ok=True)
        two = live_clips(assets, Path("bench-results/clips"))[1]
        soak = results["soak"] = live_bench(args.model_dir, face, two, args.soak_seconds, console, rec, warm_up=60)
        with FileSource(rec) as recorded:
            soak["recorded_frames"] = sum(1 for _ in recorded)
        console.print(
            f"soak ({args.soak_seconds:.0f} s, two faces, recording): {soak['fps']} fps, "
            f"{soak['dropped_pct']}% dropped, "
            f"p99 {soak['latency_ms_p99']} ms, queues at most {max(soak['queue_peaks'].values())} deep, RSS by minute "
            f"{soak.get('rss_mib_each_minute')} MiB ({soak.get('rss_growth_pct')}% after the first minute), "
            f"{soak['recorded_frames']} frames recorded"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
