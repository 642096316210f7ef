"""What this machine's CPU is: its model, cores and vector units, read the way each OS allows
(the doctor shows it; the INT8 timing is kept per CPU)."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

# /proc/cpuinfo flag -> the name users know; the units INT8 and wide FP32 speed up on
VECTOR_UNITS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "amx_int8": "AMX",
    "asimddp": "Arm dot product",
}


# macOS's sysctl hw.optional names for the same units
MAC_UNITS = {
    "hw.optional.avx2_0": "AVX2",
    "hw.optional.avx512f": "AVX-512",
    "hw.optional.avx512vnni": "AVX-512 VNNI",
    "hw.optional.arm.FEAT_DotProd": "Arm dot product",
}


def cpu(system: str | None = None, read=None) -> dict:
    """The CPU's model name, cores and vector units: /proc/cpuinfo on Linux, sysctl on macOS;
    elsewhere (Windows) the units are None, unknown, not "none". ``read(what)`` gives the
    text of ``/proc/cpuinfo`` or of ``sysctl NAME`` (a stand-in in tests)."""
    system, read = system or platform.system(), read or _read
    model, units = None, None
    if system == "Darwin":
        model = read("sysctl -n machdep.cpu.brand_string").strip() or None
        on = set(re.findall(r"^(\S+): 1$", read("sysctl hw.optional"), re.M))
        units = [name for key, name in MAC_UNITS.items() if key in on]
    elif info := read("/proc/cpuinfo"):
        found = re.search(r"^(?:model name|Hardware|Processor)\s*:\s*(.+)$", info, re.M)
        model = found[1].strip() if found else None
        flags = set(re.findall(r"\S+", (re.search(r"^(?:flags|Features)\s*:\s*(.+)$", info, re.M) or [None, ""])[1]))
        units = [name for flag, name in VECTOR_UNITS.items() if flag in flags]
    return {"model": model or platform.processor() or platform.machine(), "cores": os.cpu_count(), "units": units}


def _read(what: str) -> str:
    if what.startswith("/"):
        return Path(what).read_text() if Path(what).exists() else ""
    try:
        return subprocess.run(what.split(), capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
