"""Options that cannot drift: CLI choices come from the registries that implement them, a
preset never overrides what the user typed, and a preset value that cannot apply says so."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import asset, cli_args

from realtime.compose import BACKGROUNDS
from realtime.engine import backend_names, get_backend, precision_names
from realtime.errors import InputError
from realtime.options import MODES, Options, add_arguments, explicit, from_args, settle


def _parser(mode: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    groups = ("models", "engine", "faces", "look", "video", "files", "encoder", "output")
    add_arguments(parser, groups, MODES[mode].preset)
    return parser


def test_choices_are_the_registries():
    actions = {a.dest: a for a in _parser("file")._actions}
    assert actions["backend"].choices == ["auto", *backend_names()]
    assert actions["precision"].choices == ["auto", *precision_names()]
    offered = {p for name in backend_names() for p in get_backend(name).precisions}
    assert set(precision_names()) == offered and precision_names()[0] == "fp32"  # what the backends have, widest first
    assert actions["background"].choices == list(BACKGROUNDS)
    with pytest.raises(InputError, match="background"):
        Options(background="sparkles")


def test_the_user_flag_wins_and_is_known():
    ns = _parser("file").parse_args(["--precision", "int8", "--work-size", "360", "--no-faces"])
    assert explicit(ns) == {"precision", "work_size", "faces"}
    o = from_args(ns)
    assert (o.precision, o.work_size, o.faces, o.background_interval) == ("int8", 360, False, 4)  # 4: the preset


def test_heads_between_keyframes_need_the_smoothing():
    """The preset's head interval relies on the smoothing to carry heads between head
    keyframes: with --smoothing 0 heads are made every frame, unless asked otherwise."""
    for args, heads in (([], 3), (["--smoothing", "0"], 1), (["--smoothing", "0", "--head-interval", "2"], 2)):
        ns = _parser("file").parse_args(args)
        assert settle(from_args(ns), MODES["file"], explicit(ns))[0].head_interval == heads, args


def test_a_preset_that_cannot_apply_says_so(tmp_path):
    ns = _parser("file").parse_args(["--backend", "onnxruntime"])
    o, notes = settle(from_args(ns), MODES["file"], explicit(ns))
    assert o.precision == "auto" and len(notes) == 1 and "int8 is not in onnxruntime; running fp32" in notes[0]
    ns = _parser("file").parse_args([])
    o, notes = settle(from_args(ns).replace(cache_dir=str(tmp_path)), MODES["file"], explicit(ns))
    assert o.precision == "int8" and notes == []  # OpenVINO has it (and no timing said it is slow here)


def test_help_has_no_empty_defaults():
    text = _parser("live").format_help()
    assert "(default: None)" not in text and text.count("CARTOON_CAM_HOME") == 1


def test_cam_has_no_files_only_flags():
    code = "import sys; from realtime.cli import cam_main; sys.exit(cam_main())"
    proc = subprocess.run(
        [sys.executable, "-c", code, "--head-interval", "2"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "unrecognized arguments: --head-interval" in proc.stderr


def test_video_says_when_a_preset_value_is_dropped(assets, tiny_models, tmp_path):
    from media import frames_of, write_video

    clip = write_video(tmp_path / "c.mp4", frames_of(asset(assets, "media/classroom_720p25.mp4"), 3, (160, 96)))
    args = [str(clip), str(tmp_path / "o.mp4"), *cli_args(assets, tiny_models)]
    args.remove("--quiet")
    code = "import sys; from realtime.cli import video_main; sys.exit(video_main())"
    proc = subprocess.run(
        [sys.executable, "-c", code, *args, "--backend", "onnxruntime"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    notes = [line for line in proc.stderr.splitlines() if "note:" in line]
    assert notes == ["cartoon-video: note: the file preset's int8 is not in onnxruntime; running fp32"]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args, "--backend", "onnxruntime", "--precision", "int8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "cartoon-video: error: backend onnxruntime has no int8; choose one of fp32"
    ]


def test_non_gpu_tests_see_no_cuda():
    """The suite also runs on CUDA machines: tests not marked gpu are pinned to the CPU."""
    import os

    import torch

    assert not torch.cuda.is_available() and os.environ["CUDA_VISIBLE_DEVICES"] == ""
    with pytest.raises(ImportError):
        import tensorrt  # noqa: F401


def test_on_a_gpu_the_live_preset_keeps_full_size(monkeypatch):
    """The live preset's small work size and single engine thread only save CPU time; with
    the engines on a GPU they are dropped (and said), unless the user typed them."""
    import realtime.engine as engine

    real = engine.resolve_spec

    def on_gpu(backend="auto", precision="auto", device="auto", role="head"):
        return engine.EngineSpec("tensorrt", "fp16" if precision == "auto" else precision, "cuda", role)

    monkeypatch.setattr(engine, "resolve_spec", on_gpu)
    monkeypatch.setattr(engine.get_backend("tensorrt"), "unavailable", classmethod(lambda cls, d: None))
    ns = _parser("live").parse_args([])
    o, notes = settle(from_args(ns), MODES["live"], explicit(ns))
    assert (o.precision, o.work_size, o.engine_threads, o.face_every) == ("auto", 720, 0, 1) and len(notes) == 2
    ns = _parser("live").parse_args(["--work-size", "360"])
    o, _ = settle(from_args(ns), MODES["live"], explicit(ns))
    assert o.work_size == 360
    monkeypatch.setattr(engine, "resolve_spec", real)


def test_a_face_finder_that_never_runs_is_refused():
    with pytest.raises(InputError, match="--face-every must be 1 or more"):
        Options(face_every=0)


README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_option_is_in_the_readme_table():
    """The README's options table lists every field of ``Options`` by its flag (a new option
    without a line there fails here), with its default as the CLIs show it."""
    import dataclasses
    import re

    rows = [line for line in README.read_text().splitlines() if line.startswith("| `--")]
    flags = {m.group(1): row for row in rows for m in [re.match(r"\| `(--[a-z-]+)", row)] if m}
    missing = [f.name for f in dataclasses.fields(Options) if "--" + f.name.replace("_", "-") not in flags]
    assert not missing, f"options missing from the README's table: {missing}"
    for f in dataclasses.fields(Options):
        if isinstance(f.default, int | float | str) and not isinstance(f.default, bool):
            row = flags["--" + f.name.replace("_", "-")]
            shown = str(int(f.default)) if isinstance(f.default, float) and f.default.is_integer() else str(f.default)
            assert f"`{shown}`" in row, f"--{f.name}: the README does not show the default {shown}: {row}"


def test_readme_stays_short_and_cites_no_missing_document():
    """A README for users (at most 300 lines); the design notes docstrings cite exist."""
    assert len(README.read_text().splitlines()) <= 300
    docs = README.parent / "docs"
    assert (docs / "design.md").is_file() and (docs / "benchmarks.md").is_file()
    package = README.parent / "realtime"
    cited = [p for p in package.rglob("*.py") if "DESIGN §" in p.read_text()]
    assert not cited, f"cite docs/design.md, not DESIGN: {cited}"


def test_options_are_a_value():
    """Many threads read one Options: nobody can change it under them; variants are copies."""
    import dataclasses

    o = Options()
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.strength = 0.5
    assert o.replace(strength=0.5).strength == 0.5 and o.strength == 1.0
