"""Work spread over a Ray cluster: a local Ray started on demand, or one joined by address.

Each worker is an actor that loads the models and builds the engines once (from the shared
engine cache) and then takes batches of files; it declares what it needs (a GPU where the
engines run on CUDA, else the CPU threads its engines use), and Ray places it. Files are
written by the workers through a temporary name and a rename, so an output is never half
written; what failed comes back as one line per file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError

INSTALL = "pip install 'cartoon-cam[cluster]' (from a checkout: pip install -e '.[cluster]')"
IMAGES_PER_TASK = 4  # a task is a few images: the per-task cost of Ray stays small beside them


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError(f"--ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


@contextmanager
def connected(address: str | None) -> Iterator[object]:
    """Ray, ready: the running instance of this process if there is one, else the cluster at
    ``address`` (``auto``, ``ray://host:10001``), else a local one for this run only (on
    every core of this machine), shut down afterwards."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=os.cpu_count(), **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = address or "a local Ray"
        raise InputError(f"cannot start or reach {where} ({str(e).splitlines()[0]}); check --ray") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _resources(options) -> dict:
    """What one worker asks Ray for: a GPU for CUDA engines, else its engines' CPU threads."""
    from .engine import resolve_spec

    spec = resolve_spec(options.backend, options.precision, options.engine_device)
    if spec.device.startswith("cuda"):
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": max(1, options.engine_threads or 1)}


def _video_worker_class(ray):
    @ray.remote
    class VideoWorker:
        """Holds one Stylizer in the file mode for its lifetime and stylizes segments."""

        def __init__(self, options):
            from .options import MODES
            from .pipeline import Stylizer

            self.stylizer = Stylizer(options, mode=MODES["file"])

        def segment(self, path: str, seg, piece: str, size, fps, time_base, encoder: dict) -> int:
            from .segments import stylize_segment

            return stylize_segment(self.stylizer, Path(path), seg, Path(piece), size, fps, time_base, encoder)

    return VideoWorker


def _pool_size(ray, options, tasks: int, workers: int | None) -> tuple[int, dict, object]:
    """How many workers the cluster fits (at most ``tasks``, ``workers``), what each asks
    for, and the options they run with (a CPU worker's engines on the cores it holds)."""
    need = _resources(options)
    if "num_gpus" in need:
        fit = int(ray.cluster_resources().get("GPU", 0))
        if fit < 1:
            raise InputError("the Ray cluster has no GPU for CUDA engines; add GPU workers or use --engine-device cpu")
    else:
        fit = int(ray.cluster_resources().get("CPU", 1) // need["num_cpus"])
        options = options.replace(engine_threads=need["num_cpus"])
    return max(1, min(fit, workers or fit, tasks)), need, options


def video_segments(
    ray,
    options,
    path: Path,
    output: Path,
    progress: Callable[[int, int], None],
    segments: int | None = None,
    workers: int | None = None,
) -> tuple[int, list[str]]:
    """Stylize the video ``path`` into ``output`` in segments on the cluster (``segments``:
    how many; default one per worker) and join them; ``progress(done, total)`` in frames as
    segments finish. Returns the frame count and notes. Pieces lie in a hidden folder beside
    the output, removed in any case."""
    import shutil
    import tempfile

    from .segments import encoder_for, join, plan, scan, warm_up

    encoder = encoder_for(options, output)
    s = scan(path)
    count, need, options = _pool_size(ray, options, segments or 10**6, workers)
    parts = plan(s, segments or count, options.background_interval, warm_up(options), options.keyint)
    notes = [] if s.ordered else [f"{path.name}: its timestamps go back; it is stylized in one piece"]
    worker = _video_worker_class(ray).options(**need)
    actors = [worker.remote(options) for _ in range(min(count, len(parts)))]
    output.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{output.stem}.pieces-", dir=output.parent))
    try:
        pieces = [folder / f"{i:05d}.ts" for i in range(len(parts))]
        shape = (s.size, s.fps, s.time_base, encoder)
        pending = {
            actors[i % len(actors)].segment.remote(str(path), seg, str(pieces[i]), *shape): seg
            for i, seg in enumerate(parts)
        }
        done_frames = 0
        progress(0, len(s.pts))
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            seg = pending.pop(done[0])
            ray.get(done[0])  # a worker's error is raised here
            done_frames += seg.end - seg.start
            progress(done_frames, len(s.pts))
        sink = join(pieces, output, path, s.fps, s.time_base, s.size, encoder)
        return len(s.pts), notes + sink.notes
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _worker_class(ray):
    @ray.remote
    class ImageWorker:
        """Holds one Stylizer for its lifetime (models loaded, engines built once)."""

        def __init__(self, options):
            from .pipeline import Stylizer

            self.stylizer = Stylizer(options)

        def run(self, batch: list[tuple[str, str]], fmt: str | None, max_pixels: int) -> list[tuple]:
            """(input, failure line or None, notes) for each (input, output) of ``batch``."""
            from .image_file import failure, stylize_file

            out = []
            for src, dst in batch:
                try:
                    _, lines = stylize_file(self.stylizer, Path(src), Path(dst), fmt, max_pixels)
                    out.append((src, None, lines))
                except Exception as e:  # one bad file never stops the others
                    out.append((src, failure(Path(src), e), []))
            return out

    return ImageWorker


def image_batch(
    ray,
    options,
    jobs: list[tuple[Path, Path]],
    fmt: str | None,
    advance: Callable[[int], None],
    workers: int | None = None,
) -> tuple[list[str], list[str]]:
    """Stylize ``jobs`` on the cluster, ``IMAGES_PER_TASK`` files a task, over as many workers
    as its resources allow (``workers``: at most that many); ``advance(n)`` after each task.
    Returns (failure lines, notes)."""
    from ray.util import ActorPool

    count, need, options = _pool_size(ray, options, -(-len(jobs) // IMAGES_PER_TASK), workers)
    worker = _worker_class(ray).options(**need)
    pool = ActorPool([worker.remote(options) for _ in range(count)])
    batches = [
        [(str(s), str(d)) for s, d in jobs[i : i + IMAGES_PER_TASK]] for i in range(0, len(jobs), IMAGES_PER_TASK)
    ]
    failed, notes = [], []
    for results in pool.map_unordered(lambda a, b: a.run.remote(b, fmt, options.max_pixels), batches):
        for _, line, said in results:
            notes += said
            if line is not None:
                failed.append(line)
        advance(len(results))
    return failed, notes
