"""``cartoon-doctor`` (also ``cartoon-cam --doctor``): what this machine will use and why, on
one screen, for the commonest complaint in this field, "the GPU is not used". Each backend
on each device is ready or says exactly why not and what fixes it; ``--json`` is the same for
a bug report. It looks and reports; it changes nothing (the model hub is asked one HEAD)."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from .errors import first_line
from .machine import cpu

DEVICES = {  # where each backend can run
    "tensorrt": ("cuda",),
    "onnxruntime": ("cpu", "cuda", "dml", "coreml", "migraphx"),
    "openvino": ("cpu", "gpu", "npu"),
    "torch": ("cpu", "cuda"),
}


def gpus() -> dict:
    """NVIDIA GPUs and their driver (nvidia-smi), and what torch sees."""
    found, driver = [], None
    if smi := shutil.which("nvidia-smi"):
        query = [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"]
        try:
            done = subprocess.run(query, capture_output=True, text=True, timeout=10)
            rows = done.stdout.strip().splitlines()
            if done.returncode:  # "couldn't communicate with the NVIDIA driver", a version mismatch
                driver = f"nvidia-smi fails: {(rows or done.stderr.splitlines() or ['no output'])[0].strip()}"
            else:
                found = [r.split(",")[0].strip() for r in rows if r.strip()]
                driver = rows[0].split(",")[1].strip() if rows and "," in rows[0] else None
        except (OSError, subprocess.TimeoutExpired) as e:
            driver = f"nvidia-smi fails: {e}"
    try:
        import torch

        torch_sees = f"torch {torch.__version__}: CUDA {torch.version.cuda or 'none (a CPU build)'}, " + (
            f"{torch.cuda.device_count()} device(s)" if torch.cuda.is_available() else "no CUDA device"
        )
    except ImportError:
        torch_sees = "torch is not installed"
    except Exception as e:  # a broken CUDA build (a missing libcudart): the case this command is for
        torch_sees = f"torch does not load: {first_line(e, 160)}"
    return {"nvidia": found, "driver": driver, "nvidia_smi": bool(smi), "torch": torch_sees}


def backends() -> list[dict]:
    """Each backend on each device it may use: ready, or the reason with its fix."""
    from .engine import backend_names, get_backend

    out = []
    for name in backend_names():
        b = get_backend(name)
        for device in DEVICES.get(name, ("cpu",)):
            try:
                reason = b.unavailable(device)
            except Exception as e:  # a broken install: say it, go on with the others
                reason = f"{type(e).__name__}: {first_line(e, 160)}"
            out.append({"backend": name, "device": device, "ready": reason is None, "reason": reason})
    return out


def engines() -> dict:
    """What ``cartoon-cam`` and ``cartoon-video`` would run here with their defaults."""
    from .engine import resolve_spec
    from .errors import CartoonError
    from .options import MODES, Options, in_mode
    from .trial import found

    out = {}
    for command, mode in (("cartoon-cam", "live"), ("cartoon-video", "file")):
        try:
            o, notes = in_mode(Options(), MODES[mode])
            spec = resolve_spec(o.backend, o.precision, o.engine_device)
            tries = [f"{d} ({n})" for n, d in found()] if spec.device == "cpu" else []
            out[command] = f"{spec.backend} {spec.precision} on {spec.device}" + (f" ({notes[0]})" if notes else "")
            if tries:
                out[command] += f"; auto tries {', '.join(tries)} against it on first use (kept if faster, alike)"
        except CartoonError as e:
            out[command] = f"nothing runs: {e}"
        except Exception as e:  # a broken install: say it, go on
            out[command] = f"nothing runs: {type(e).__name__}: {first_line(e, 160)}"
    return out


def virtual_camera() -> str:
    """Whether a virtual camera can be offered, or how to get one."""
    from .sinks import virtual_camera_hint

    if platform.system() == "Linux":
        names = [p.read_text().strip() for p in Path("/sys/devices/virtual/video4linux").glob("*/name")]
        if Path("/sys/module/v4l2loopback").exists():
            return "v4l2loopback is loaded" + (f" ({', '.join(names)})" if names else "")
        return f"v4l2loopback is not loaded; {virtual_camera_hint()}"
    return f"not checked on {platform.system()}; {virtual_camera_hint()}"


def hub(offline: bool) -> str:
    """Whether the model hub answers (one HEAD request, 5 s at most)."""
    if offline:
        return "not asked (--offline)"
    import urllib.error
    import urllib.request

    from .models import endpoint

    try:
        urllib.request.urlopen(urllib.request.Request(endpoint(), method="HEAD"), timeout=5).close()
        return f"{endpoint()} answers"
    except urllib.error.HTTPError as e:  # it answered, if not with a page
        return f"{endpoint()} answers (HTTP {e.code})"
    except (OSError, ValueError) as e:
        why = getattr(e, "reason", e)
        return f"{endpoint()} does not answer ({why}); run offline with --model-dir and --face-model"


def examine(cache: str | Path | None = None, offline: bool = False) -> dict:
    from .cache import cache_dir
    from .sources import list_cameras

    folder = cache_dir(cache)
    probe = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    system = f"{platform.system()} {platform.release()} ({platform.machine()})"
    return {
        "system": f"{system}, Python {platform.python_version()}",
        "cpu": cpu(),
        "gpus": gpus(),
        "backends": backends(),
        "engines": engines(),
        "cameras": [name for name, _ in list_cameras()],
        "virtual_camera": virtual_camera(),
        "cache": {"folder": str(folder), "free_gb": round(shutil.disk_usage(probe).free / 1e9, 1)},
        "hub": hub(offline),
    }


def render(r: dict) -> str:
    c, g = r["cpu"], r["gpus"]
    lines = [
        f"system     {r['system']}",
        f"cpu        {c['model']}, {c['cores']} cores; "
        + ("vector units not read on this OS" if c["units"] is None else ", ".join(c["units"]) or "no AVX2"),
        "gpus       "
        + (f"{', '.join(g['nvidia'])} (driver {g['driver']})" if g["nvidia"] else g["driver"] or "no NVIDIA GPU found")
        + ("" if g["nvidia_smi"] else " (no nvidia-smi)")
        + f"; {g['torch']}",
    ]
    for b in r["backends"]:
        state = "ready" if b["ready"] else f"no: {b['reason']}"
        lines.append(f"backend    {b['backend'] + ' on ' + b['device']:24} {state}")
    lines += [f"{cmd:10} would run {spec}" for cmd, spec in r["engines"].items()]
    lines += [
        f"cameras    {', '.join(r['cameras']) or 'none found'}",
        f"virtual    {r['virtual_camera']}",
        f"cache      {r['cache']['folder']} ({r['cache']['free_gb']} GB free)",
        f"model hub  {r['hub']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from .console import run_command

    parser = argparse.ArgumentParser(prog="cartoon-doctor", description="Say what this machine will use, and why.")
    parser.add_argument("--json", action="store_true", help="the same as JSON, for a bug report")
    parser.add_argument("--offline", action="store_true", help="do not ask the model hub whether it answers")
    parser.add_argument("--cache-dir", type=Path, help="cache directory (default: $CARTOON_CAM_HOME or platform's)")
    args = parser.parse_args(argv)

    def body(interrupts) -> None:
        r = examine(args.cache_dir, args.offline)
        print(json.dumps(r, indent=1) if args.json else render(r))

    return run_command(parser.prog, body)


if __name__ == "__main__":
    sys.exit(main())
