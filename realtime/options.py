"""Every knob of cartoon-cam, in one frozen dataclass that the CLIs, the web app and the
Python API all fill; a variant is ``options.replace(...)``, so threads share it safely.

Each field carries its command-line help and group; ``add_arguments`` turns the groups a
CLI asks for into argparse flags, and ``from_args`` turns the parsed flags back into
``Options``. A new option is added here once and appears everywhere. The choices of
backend, precision and background are the registries that implement them.

A running ``Mode`` (image, file, live) decides the rest: how frames queue, whether faces are
tracked, and the preset a command starts from.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType

from .compose import BACKGROUNDS
from .engine import backend_names, precision_names


def opt(default, help: str, group: str, **argparse_kw):
    return field(default=default, metadata={"help": help, "group": group, **argparse_kw})


@dataclass(frozen=True)
class Options:
    # models
    style: str = opt("anime", "DCT-Net style (see `cartoon-models list`)", "models")
    model_dir: Path | None = opt(
        None, "use a local ModelScope-layout folder with cartoon_*_h.pb / _bg.pb", "models", type=Path, metavar="DIR"
    )
    face_model: Path | None = opt(
        None, "use a local MediaPipe face_landmarker.task", "models", type=Path, metavar="PATH"
    )
    cache_dir: Path | None = opt(
        None,
        "where weights and built engines live (default: $CARTOON_CAM_HOME, else the platform cache folder)",
        "models",
        type=Path,
        metavar="DIR",
    )
    offline: bool = opt(
        False, "never touch the network; fail with the file to put where if a model is missing", "models"
    )
    # engine
    backend: str = opt("auto", "inference backend", "engine", choices=["auto", *backend_names()])
    precision: str = opt(
        "auto",
        "fp32; fp16 (GPU); bf16 (OpenVINO, torch on CUDA); int8 (OpenVINO). auto: fp16 on a GPU, else fp32; "
        "one the backend lacks is an error, except a preset's int8, which runs auto",
        "engine",
        choices=["auto", *precision_names()],
    )
    engine_threads: int = opt(0, "CPU threads per engine (0: all cores)", "engine", type=int, metavar="N")
    engine_device: str = opt(
        "auto",
        "where the engine runs: auto (CUDA, else a device below that beats the CPU in a trial, else the CPU), "
        "cpu, cuda or cuda:N (NVIDIA); not yet run by us: dml or dml:N (DirectML, Windows), coreml (Apple "
        "silicon), migraphx (AMD ROCm), gpu, gpu:N or npu (Intel)",
        "engine",
        metavar="DEV",
    )
    # faces
    faces: bool = opt(
        True, "find faces and stylize them with the head model (--no-faces: background graph only)", "faces"
    )
    max_faces: int = opt(4, "stylize at most this many faces per frame (largest first)", "faces", type=int, metavar="N")
    face_every: int = opt(
        1,
        "run the face finder on every N-th frame and follow the faces by optical flow in between "
        "(up to 3 no further off than the finder's own jitter; drift grows with N)",
        "video",
        type=int,
        metavar="N",
    )
    # look
    strength: float = opt(
        1.0, "0..1: mix of the cartoon with the original (1 = full cartoon)", "look", type=float, metavar="S"
    )
    background: str = opt(
        "cartoon",
        "what is around the heads: cartoon (the background graph), photo, blur (of the photo), key (a flat "
        "--key-color) or transparent (the heads alone: alpha in PNG/WebP and the overlay, black in a video)",
        "look",
        choices=list(BACKGROUNDS),
    )
    key_color: tuple = opt(
        (0, 255, 0),
        "chroma-key colour for --background key, as R,G,B or #rrggbb",
        "look",
        type=lambda v: parse_color(v),
        metavar="RGB",
    )
    work_size: int = opt(
        720,
        "stylize the frame at this short side at most (the official pipeline: 720)",
        "look",
        type=int,
        metavar="PX",
    )
    # images
    max_pixels: int = opt(
        100_000_000,
        "refuse images with more pixels than this (a small file can decode to gigabytes); raise it for huge scans",
        "images",
        type=int,
        metavar="N",
    )
    # video and live
    smoothing: float = opt(
        1.0,
        "0..1: files: how far output and heads lean on the previous frame carried along the flow, and "
        "landmark filtering; live: landmark filtering only (any value above 0); 0: off, each frame on its own",
        "video",
        type=float,
        metavar="S",
    )
    head_interval: int = opt(
        1,
        "stylize heads every N-th frame and carry them on the tracked face in between",
        "files",
        type=int,
        metavar="N",
    )
    background_interval: int = opt(
        1,
        "stylize the background every N-th frame (live: every N-th engine run) and carry it along "
        "optical flow in between (a scene cut forces a fresh one)",
        "video",
        type=int,
        metavar="N",
    )
    crf: int = opt(18, "x264/x265 CRF, lower is better and bigger (VP9: CRF+13)", "encoder", type=int)
    codec: str = opt("auto", "video encoder: auto (H.264; VP9 in .webm) or any FFmpeg encoder, e.g. libx265", "encoder")
    keyint: int = opt(
        250,
        "a keyframe on every N-th source frame (250 is x264's default interval); cartoon-video --ray cuts there",
        "encoder",
        type=int,
    )
    preset: str = opt(
        "medium",
        "encoder speed preset (x264/x265; VP9: the matching cpu-used)",
        "encoder",
        choices=["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"],
    )
    device: str = opt(
        "0",
        "camera index, path (/dev/video2) or name, a video file played as a live source, or FORMAT:NAME for any "
        "FFmpeg input device (x11grab::0.0 films the screen)",
        "live",
        metavar="DEV",
    )
    loop: bool = opt(False, "repeat a video file given to --device", "live")
    size: str | None = opt(None, "camera size to ask for, WxH (e.g. 1280x720)", "live", metavar="WxH")
    fps: float | None = opt(None, "camera frame rate to ask for", "live", type=float)
    virtual: str = opt(
        "auto", "send to a virtual camera (auto: when a backend exists)", "live", choices=["auto", "on", "off"]
    )
    preview: bool = opt(False, "show a preview window (q or Esc quits)", "live")
    record: Path | None = opt(None, "also record the output to a video file", "live", type=Path, metavar="PATH")
    max_frames: int | None = opt(None, "stop after this many output frames", "live", type=int, metavar="N")
    stats_json: Path | None = opt(
        None, "write frames, fps, latency and drops as JSON at the end", "live", type=Path, metavar="PATH"
    )
    quiet: bool = opt(False, "no progress bars or build messages", "output")

    def __post_init__(self) -> None:
        from .errors import InputError, quoted

        if not 0.0 <= self.strength <= 1.0:
            raise InputError(f"--strength must be between 0 and 1, got {self.strength}")
        if self.face_every < 1:
            raise InputError(f"--face-every must be 1 or more, got {self.face_every}")
        if self.max_faces < 0:
            raise InputError(f"--max-faces must be 0 or more, got {self.max_faces}")
        if not 0.0 <= self.smoothing <= 1.0:
            raise InputError(f"--smoothing must be between 0 and 1, got {self.smoothing}")
        if self.background_interval < 1:
            raise InputError(f"--background-interval must be 1 or more, got {self.background_interval}")
        if self.head_interval < 1:
            raise InputError(f"--head-interval must be 1 or more, got {self.head_interval}")
        if self.keyint < 1:
            raise InputError(f"--keyint must be 1 or more, got {self.keyint}")
        if self.work_size < 64:
            raise InputError(f"--work-size must be at least 64, got {self.work_size}")
        if self.max_pixels < 1:
            raise InputError(f"--max-pixels must be at least 1, got {self.max_pixels}")
        for name, value, known in (
            ("background", self.background, list(BACKGROUNDS)),
            ("backend", self.backend, ["auto", *backend_names()]),
            ("precision", self.precision, ["auto", *precision_names()]),
        ):
            if value not in known:
                raise InputError(f"--{name} {quoted(value)} is not one of: {', '.join(known)}")
        from .models import STYLES

        if self.style not in STYLES:
            raise InputError(f"--style {quoted(self.style)} is not one of: {', '.join(STYLES)}")

    def encoder(self) -> dict:
        """The video encoder's settings, as ``VideoFileSink`` takes them."""
        return {"codec": self.codec, "crf": self.crf, "preset": self.preset, "keyint": self.keyint}

    def camera_size(self) -> tuple[int, int] | None:
        if not self.size:
            return None
        try:
            w, h = (int(v) for v in self.size.lower().split("x"))
        except ValueError:
            from .errors import InputError, quoted

            raise InputError(f"--size {quoted(self.size)} is not WxH, e.g. 1280x720") from None
        return w, h

    def replace(self, **changes) -> Options:
        return dataclasses.replace(self, **changes)


def parse_color(text: str) -> tuple[int, int, int]:
    """'0,255,0' or '#00ff00' -> (0, 255, 0)."""
    t = text.strip().lstrip("#")
    try:
        rgb = (
            tuple(int(t[i : i + 2], 16) for i in (0, 2, 4))
            if len(t) == 6 and "," not in t
            else tuple(int(v) for v in t.split(","))
        )
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise argparse.ArgumentTypeError(f"{text!r} is not a colour; use R,G,B (0-255 each) or #rrggbb")
    return rgb


def add_arguments(parser: argparse.ArgumentParser, groups: tuple[str, ...], preset: Mapping | None = None) -> None:
    """Add the flags of the named option groups to ``parser``; a command's ``preset``
    replaces some defaults (and the help says so). Flags the user gives are recorded, so a
    preset never overrides them (``explicit``)."""
    preset = preset or {}
    for g in groups:
        arg_group = parser.add_argument_group(g)
        for f in fields(Options):
            meta = dict(f.metadata)
            if meta.pop("group") != g:
                continue
            flag = "--" + f.name.replace("_", "-")
            default = preset.get(f.name, f.default)
            if isinstance(default, bool):
                action = _BooleanFlag if default else _TrueFlag
                arg_group.add_argument(flag, dest=f.name, action=action, default=default, help=meta["help"])
            else:
                kw = {k: v for k, v in meta.items() if k != "help"}
                shown = "" if default is None or "default:" in meta["help"] else f" (default: {_shown(default)})"
                arg_group.add_argument(
                    flag, dest=f.name, action=_Store, default=default, help=meta["help"] + shown, **kw
                )


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _mark(namespace: argparse.Namespace, dest: str) -> None:
    namespace.explicit_ = getattr(namespace, "explicit_", frozenset()) | {dest}


class _Store(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        _mark(namespace, self.dest)


class _TrueFlag(argparse.Action):
    def __init__(self, option_strings, dest, default=False, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
        _mark(namespace, self.dest)


class _BooleanFlag(argparse.BooleanOptionalAction):
    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _mark(namespace, self.dest)


def from_args(ns: argparse.Namespace) -> Options:
    return Options(**{f.name: getattr(ns, f.name) for f in fields(Options) if hasattr(ns, f.name)})


def explicit(ns: argparse.Namespace) -> frozenset[str]:
    """The options the user gave on the command line (a preset must not change them)."""
    return getattr(ns, "explicit_", frozenset())


@dataclass(frozen=True)
class Mode:
    """How a command runs: ``newest_wins`` (live: stale frames are dropped; files and
    images never drop one), ``tracking`` (faces are followed from frame to frame: MediaPipe's
    VIDEO mode, track ids, smoothing), and the ``preset`` it starts from on a CPU, chosen
    by measurement; ``gpu`` says what a GPU uses instead where the CPU preset only saves time."""

    name: str
    newest_wins: bool
    tracking: bool
    preset: Mapping = field(default_factory=lambda: MappingProxyType({}))
    gpu: Mapping = field(default_factory=lambda: MappingProxyType({}))


# On a CPU (scripts/bench.py, 2 cores): INT8 engines (42 dB from FP32, 1.8x faster); files
# stylize the background every 4th frame and take the frames between from the anchors on
# both sides, along optical flow, and heads every 3rd frame, carried in their aligned crop
# along its flow in between (with smoothing, as steady and faithful as every 2nd and 3rd
# frame: identity model 35.6 dB; without it, heads are made every frame);
# live runs the engines beside the frame path on one core with the background at 288 px,
# fresh every 2nd engine run, runs the face landmarker on every 3rd frame (following the
# faces by optical flow in between: every 2nd, with the cheaper warps beside it, took 17-25
# ms off the two-face live bench's p50 latency; every 3rd 12 ms and 30 ms off p99 more),
# and records with x264's veryfast preset. On a GPU the engines are not the bottleneck: the
# background keeps its full size, every core is free, and the landmarker sees every frame.
MODES = {
    m.name: m
    for m in (
        Mode("image", newest_wins=False, tracking=False),
        Mode(
            "file",
            newest_wins=False,
            tracking=True,
            preset=MappingProxyType({"precision": "int8", "background_interval": 4, "head_interval": 3}),
        ),
        Mode(
            "live",
            newest_wins=True,
            tracking=True,
            preset=MappingProxyType(
                {
                    "precision": "int8",
                    "work_size": 288,
                    "engine_threads": 1,
                    "face_every": 3,
                    "background_interval": 2,
                    "preset": "veryfast",
                }
            ),
            gpu=MappingProxyType(
                {"work_size": Options.work_size, "engine_threads": 0, "face_every": Options.face_every}
            ),
        ),
    )
}


def in_mode(options: Options, mode: Mode, given: frozenset[str] = frozenset()) -> tuple[Options, list[str]]:
    """``options`` with ``mode``'s preset where the user gave no value, settled: what a
    server runs a job of that mode with (a CLI gets the preset as its flags' defaults)."""
    preset = {k: v for k, v in mode.preset.items() if k not in given}
    return settle(options.replace(**preset), mode, given)


UNTRIED = {"dml", "coreml", "migraphx", "gpu", "npu"}  # devices written to their documentation, not yet run on one


def settle(options: Options, mode: Mode, given: frozenset[str] = frozenset()) -> tuple[Options, list[str]]:
    """The options a command runs with, and a line for each preset value that had to change:
    the preset's INT8 where the backend has none (a GPU runs its own default, FP16), and on a
    GPU the values that only save CPU time. Options in ``given`` (typed by the user) are
    never changed."""
    from .engine import get_backend, resolve_spec

    changes, notes = {}, []
    if options.model_dir and "style" in given:
        notes.append(f"--style {options.style} is ignored: --model-dir {options.model_dir} gives the graphs")
    spec = resolve_spec(options.backend, "auto", options.engine_device)
    preset_precision = "precision" not in given and options.precision == mode.preset.get("precision")
    if preset_precision and options.precision not in get_backend(spec.backend).precisions:
        changes["precision"] = "auto"
        auto = resolve_spec(spec.backend, "auto", spec.device).precision
        notes.append(f"the {mode.name} preset's {options.precision} is not in {spec.backend}; running {auto}")
    if preset_precision and options.precision == "int8" and (spec.backend, spec.device) == ("openvino", "cpu"):
        from . import precision
        from .cache import cache_dir

        if (v := precision.read(cache_dir(options.cache_dir) / "engines")) and not precision.pays(v):
            changes["precision"] = "fp32"
            notes.append(f"{precision.said(v)}: the {mode.name} preset runs fp32 (exact); --precision int8 forces it")
    if spec.device.partition(":")[0] in UNTRIED:
        notes.append(
            f"engines: {spec.backend} on {spec.device}; this device is written to its runtime's documentation, "
            "not yet run on one by us: --engine-device cpu if it misbehaves"
        )
    preset_heads = "head_interval" not in given and options.head_interval == mode.preset.get("head_interval")
    if options.smoothing == 0 and preset_heads:
        changes["head_interval"] = 1  # only the smoothing carries heads between head anchors
    if spec.device.startswith("cuda"):
        for key, value in mode.gpu.items():
            if key not in given and getattr(options, key) == mode.preset.get(key) != value:
                changes[key] = value
        if changes.keys() & mode.gpu.keys():
            shown = ", ".join(f"--{k.replace('_', '-')} {changes[k]}" for k in mode.gpu if k in changes)
            notes.append(f"engines on {spec.device}: the CPU preset's savings are off ({shown})")
    return options.replace(**changes), notes
