"""Whether INT8 pays on this CPU. The file and live presets ask for OpenVINO's INT8, which is
1.7x FP32's speed on an AVX2 Zen 3 and more with VNNI or AMX, but no faster on CPUs whose
integer units are no wider than their float ones (a Zen 1 EPYC: 316 against 311 ms a head,
for 43 dB): there INT8 costs fidelity for nothing. So when the INT8 head engine is built it
is timed against FP32 on the same crop, once per CPU and OpenVINO version; a preset's INT8
then runs only where it was faster (``options.settle``). ``--precision`` forces either.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
from collections.abc import Callable
from pathlib import Path

FASTER = 0.9  # INT8 must take at most this share of FP32's time to be worth its error


def verdict_path(engines: Path) -> Path:
    """The timing's file in the engine cache: one per CPU model, core count and OpenVINO."""
    from .cache import versions
    from .machine import cpu

    c = cpu()
    key = f"{c['model']} {c['cores']} {platform.machine()} {versions(('openvino',))}"
    return Path(engines) / f"int8-timing-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def read(engines: Path) -> dict | None:
    """``{"int8_ms", "fp32_ms"}`` as timed on this machine, or None (not yet, or unreadable)."""
    try:
        v = json.loads(verdict_path(engines).read_text())
        return v if float(v["int8_ms"]) > 0 and float(v["fp32_ms"]) > 0 else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pays(v: dict) -> bool:
    return v["int8_ms"] <= FASTER * v["fp32_ms"]


def said(v: dict) -> str:
    """The timing in words, for the preset's note."""
    return f"INT8 takes {v['int8_ms']:.0f} ms a head here against FP32's {v['fp32_ms']:.0f} ms"


def time_int8(make: Callable[[str], object], engines: Path) -> dict:
    """Time the INT8 and FP32 head engines (``make("int8")``, ``make("fp32")``) on one crop,
    interleaved, and keep the verdict."""
    from .cache import write_atomic
    from .timing import head_crop, timed

    crop, ms = head_crop(), {"int8": [], "fp32": []}
    for _ in range(2):  # interleaved: a machine that slows down mid-way slows both
        for p in ("int8", "fp32"):
            ms[p].append(timed(make(p), crop, runs=3)[1])
    v = {"int8_ms": min(ms["int8"]), "fp32_ms": min(ms["fp32"])}
    with contextlib.suppress(OSError):  # not kept: timed again at the next INT8 build
        write_atomic(verdict_path(engines), json.dumps(v).encode())
    return v
