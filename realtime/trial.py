"""``auto`` on an accelerator we have not run (DirectML, CoreML, Intel GPU/NPU): try it once.

Written to their runtimes' documentation, such devices may be slower than the CPU (ops that fall
back to it, copies each call) or wrong (a driver's FP16). So the first run on a machine builds the
head engine there and on the CPU, runs both on the same crop and keeps the device only where it
agrees with the CPU and is faster; the verdict is cached beside the engines (one per model,
device and runtime version), so later runs decide at once and say the same line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .cache import cache_dir, write_atomic
from .engine import EngineSpec, backend_names, get_backend, resolve_spec
from .engine_cache import artifact_key, load_engine
from .errors import BackendError, first_line
from .options import Options
from .quality import psnr
from .timing import RUNS, head_crop, timed

AGREES_DB = 30.0  # FP16 or INT8 beside FP32 is 35-45 dB here; a broken kernel is under 20
FASTER = 0.9  # the device must take at most this share of the CPU's time per head


@dataclass(frozen=True)
class Verdict:
    """How a device fared against the CPU on one head; ``error`` when it could not run."""

    device: str
    backend: str
    psnr_db: float = 0.0
    ms: float = 0.0
    cpu_ms: float = 0.0
    error: str = ""

    @property
    def taken(self) -> bool:
        return not self.error and self.psnr_db >= AGREES_DB and self.ms <= FASTER * self.cpu_ms

    def line(self) -> str:
        name = f"{self.device} ({self.backend})"
        if self.error:
            return f"auto tried {name}: it does not run ({self.error}); engines on the CPU"
        if self.psnr_db < AGREES_DB:
            return f"auto tried {name}: its cartoon differs from the CPU's ({self.psnr_db:.1f} dB); engines on the CPU"
        speed = f"{self.ms:.0f} ms a head against the CPU's {self.cpu_ms:.0f} ms"
        if not self.taken:
            return f"auto tried {name}: {speed}, not faster; engines on the CPU"
        return f"auto tried {name}: {speed}, the same cartoon ({self.psnr_db:.1f} dB); engines on {self.device}"


def found() -> list[tuple[str, str]]:
    """(backend, device) for each accelerator a backend finds that ``auto`` has not run."""
    return [(name, d) for name in backend_names() for d in get_backend(name).found_devices()]


def candidate_spec(backend: str, device: str, precision: str) -> EngineSpec:
    """The head engine to try: the asked precision where the backend has it, else its own."""
    keep = precision if precision in get_backend(backend).precisions else "auto"
    return resolve_spec(backend, keep, device, "head")


def trial(graph: Path, candidate: EngineSpec, cpu: EngineSpec, root=None, log=None) -> Verdict:
    """Run ``candidate`` beside ``cpu`` on one crop, once per model, device and runtime: the
    verdict is cached under the engine cache."""
    key = {"candidate": artifact_key(graph, candidate), "cpu": artifact_key(graph, cpu), "runs": RUNS}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir(root) / "trials" / f"{candidate.backend}-{candidate.device}-{digest}.json"
    if path.exists():
        try:
            return Verdict(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            pass  # a damaged verdict is tried again
    crop = head_crop()
    want, cpu_ms = timed(load_engine(graph, cpu, root, log), crop)
    try:
        got, ms = timed(load_engine(graph, candidate, root, log), crop)
        verdict = Verdict(candidate.device, candidate.backend, round(psnr(got, want), 2), ms, cpu_ms)
    except Exception as e:  # whatever the device's runtime raises: the CPU stays, with its reason
        verdict = Verdict(candidate.device, candidate.backend, cpu_ms=cpu_ms, error=first_line(e, 160))
    with contextlib.suppress(OSError):  # a verdict not kept is only tried again next time
        write_atomic(path, json.dumps(asdict(verdict)).encode())
    return verdict


def on_best_device(options: Options, graph: Path, log=None) -> Options:
    """``options`` moved to an accelerator that ``auto`` found and that won its trial, else as
    they were; one line for each device tried. A device given by name is never second-guessed."""
    o = options
    if o.engine_device != "auto" or resolve_spec(o.backend, o.precision).device != "cpu":
        return o
    cpu = resolve_spec(o.backend, o.precision, "cpu", "head")
    for name, device in found():
        if o.backend not in ("auto", name):
            continue
        try:
            verdict = trial(graph, candidate_spec(name, device, o.precision), cpu, o.cache_dir, log)
        except BackendError as e:
            verdict = Verdict(device, name, error=first_line(e, 160))
        if log:
            log(verdict.line())
        if verdict.taken:
            keep = o.precision in get_backend(name).precisions
            return o.replace(backend=name, engine_device=device, precision=o.precision if keep else "auto")
    return o
