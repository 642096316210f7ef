"""Every knob of cartoon-cam, in one dataclass that the CLIs and the Python API both fill.

Each field carries its command-line help and group; ``add_arguments`` turns the groups a
CLI asks for into argparse flags, and ``from_args`` turns the parsed flags back into
``Options``. A new option is added here once and appears everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path


def opt(default, help: str, group: str, **argparse_kw):
    return field(default=default, metadata={"help": help, "group": group, **argparse_kw})


@dataclass
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
        "where weights and built engines live (default: $CARTOON_CAM_HOME or the platform cache dir)",
        "models",
        type=Path,
        metavar="DIR",
    )
    offline: bool = opt(
        False, "never touch the network; fail with the file to put where if a model is missing", "models"
    )
    # engine
    backend: str = opt(
        "auto", "inference backend", "engine", choices=["auto", "tensorrt", "onnxruntime", "openvino", "torch"]
    )
    precision: str = opt(
        "auto",
        "engine precision where the backend has it (auto: fp16 on GPU, fp32 on CPU)",
        "engine",
        choices=["auto", "fp32", "fp16", "bf16", "int8"],
    )
    engine_device: str = opt("auto", "where the engine runs: auto, cpu, cuda or cuda:N", "engine", metavar="DEV")
    # image pipeline
    faces: bool = opt(
        True, "find faces and stylize them with the head model (--no-faces: background graph only)", "image"
    )
    work_size: int = opt(
        720,
        "stylize the frame at this short side at most, as the official pipeline does",
        "image",
        type=int,
        metavar="PX",
    )
    quiet: bool = opt(False, "no progress bars or build messages", "output")

    def replace(self, **changes) -> Options:
        return dataclasses.replace(self, **changes)


def add_arguments(parser: argparse.ArgumentParser, groups: tuple[str, ...]) -> None:
    """Add the flags of the named option groups to ``parser``."""
    defaults = Options()
    for g in groups:
        arg_group = parser.add_argument_group(g)
        for f in fields(Options):
            meta = dict(f.metadata)
            if meta.pop("group") != g:
                continue
            flag = "--" + f.name.replace("_", "-")
            default = getattr(defaults, f.name)
            if isinstance(default, bool):
                action = argparse.BooleanOptionalAction if default else "store_true"
                arg_group.add_argument(flag, dest=f.name, action=action, default=default, help=meta["help"])
            else:
                kw = {k: v for k, v in meta.items() if k != "help"}
                arg_group.add_argument(
                    flag, dest=f.name, default=default, help=meta["help"] + f" (default: {default})", **kw
                )


def from_args(ns: argparse.Namespace) -> Options:
    return Options(**{f.name: getattr(ns, f.name) for f in fields(Options) if hasattr(ns, f.name)})
