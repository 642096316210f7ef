"""Video jobs: a queue worked one job at a time, on a thread that yields to the live path.

A job's state is an immutable ``JobState`` replaced whole on each change, so a request
reading it never sees one half-updated. The upload is removed when its job ends; results
are removed when the server stops (or after ``keep`` seconds).
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import CartoonError, InputError
from ..options import Options


class Cancelled(CartoonError):
    """A job stopped because its client asked (DELETE /api/v1/jobs/ID)."""


class QueueFull(InputError):
    """Too many jobs waiting: the server answers 429."""


@dataclass(frozen=True)
class JobState:
    state: str = "queued"  # queued, running, cancelling, done, failed, cancelled
    progress: float = 0.0
    frames_done: int = 0
    frames_total: int = 0
    position: int = 0  # jobs ahead of this one (queued only)
    eta_seconds: float | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()

    def public(self) -> dict:
        d = {
            "state": self.state,
            "progress": round(self.progress, 4),
            "frames_done": self.frames_done,
            "frames_total": self.frames_total,
        }
        if self.state == "queued":
            d["position"] = self.position
        if self.eta_seconds is not None:
            d["eta_seconds"] = round(self.eta_seconds, 1)
        if self.error:
            d["error"] = self.error
        if self.notes:
            d["notes"] = list(self.notes)
        return d


@dataclass(frozen=True)
class Job:
    id: str
    upload: Path
    result: Path
    name: str  # what the download is called (from a cleaned client name)
    options: Options
    frames_total: int
    max_seconds: float  # the duration limit, held to while decoding (a header can lie)
    seconds: float = 0.0  # how long the upload says it is


class Jobs:
    """The video queue. ``submit`` returns an id; ``state`` and ``result`` answer for it."""

    def __init__(self, folder: Path, keep: float = 3600.0, priority: int | None = None, max_waiting: int = 20):
        """``priority``: the worker's (``stream.live.lower_priority``; None: the idle class,
        where a live session's engines are too, so a job never takes their share)."""
        self.folder, self.keep, self.priority, self.max_waiting = folder, keep, priority, max_waiting
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._states: dict[str, JobState] = {}
        self._order: list[str] = []
        self._cancel = threading.Event()
        self._cancelled: set[str] = set()  # jobs asked to stop (DELETE /api/v1/jobs/ID)
        self._thread = threading.Thread(target=self._work, name="video-jobs", daemon=True)
        self._thread.start()

    def submit(
        self, upload: Path, name: str, options: Options, frames_total: int, max_seconds: float, seconds: float = 0.0
    ) -> str:
        job_id = secrets.token_hex(8)
        job = Job(job_id, upload, self.folder / job_id / name, name, options, frames_total, max_seconds, seconds)
        with self._lock:  # counted and queued in one step: two uploads at once cannot both pass the count
            waiting = sum(st.state == "queued" for st in self._states.values())
            if waiting >= self.max_waiting:
                raise QueueFull(f"{waiting} videos are waiting already; try again when some are done")
            job.result.parent.mkdir()
            self._jobs[job_id] = job
            self._order.append(job_id)
            self._states[job_id] = JobState(frames_total=frames_total)
            self._reposition()
        self._queue.put(job)
        return job_id

    def state(self, job_id: str) -> JobState | None:
        with self._lock:
            self._expire()
            return self._states.get(job_id)

    def result(self, job_id: str) -> tuple[Path, str] | None:
        with self._lock:
            job, st = self._jobs.get(job_id), self._states.get(job_id)
            return (job.result, job.name) if job and st and st.state == "done" else None

    def cancel(self, job_id: str) -> JobState | None:
        """Stop a job: a queued one never runs, a running one stops at its next frame; its
        files go. None for an unknown job; a finished one is left as it is."""
        with self._lock:
            st = self._states.get(job_id)
            if st is None or st.state not in ("queued", "running"):
                return st
            self._cancelled.add(job_id)
            changed = "cancelling" if st.state == "running" else "cancelled"
            self._states[job_id] = replace(st, state=changed, eta_seconds=None)
            self._reposition()
            if changed == "cancelled":
                self._jobs[job_id].upload.unlink(missing_ok=True)
                _emptied(self.folder / job_id)
            return self._states[job_id]

    def close(self) -> None:
        """Stop the worker (a running job ends at its next frame) and remove every file."""
        self._cancel.set()
        self._queue.put(None)
        self._thread.join(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _stop_reason(self, job_id: str) -> str | None:
        """Why a running job must stop now, if it must."""
        if self._cancel.is_set():
            return "the server is stopping"
        with self._lock:
            return "cancelled" if job_id in self._cancelled else None

    def _set(self, job_id: str, **changes) -> None:
        with self._lock:
            self._states[job_id] = replace(self._states[job_id], **changes)
            if "state" in changes:
                self._reposition()

    def _reposition(self) -> None:
        ahead = 0
        for jid in self._order:
            st = self._states[jid]
            if st.state in ("running", "cancelling"):
                ahead += 1
            elif st.state == "queued":
                self._states[jid] = replace(st, position=ahead)
                ahead += 1

    def _expire(self) -> None:
        now = time.time()
        for jid in list(self._order):
            folder = self.folder / jid
            st = self._states[jid]
            ended = st.state in ("done", "failed", "cancelled")
            if ended and folder.exists() and now - folder.stat().st_mtime > self.keep:
                shutil.rmtree(folder, ignore_errors=True)
                self._order.remove(jid)
                del self._states[jid], self._jobs[jid]

    def _work(self) -> None:
        from ..stream.live import lower_priority

        lower_priority(self.priority)  # a job waits; a live frame would be dropped
        while True:
            try:
                job = self._queue.get(timeout=60)
            except queue.Empty:
                with self._lock:
                    self._expire()  # results nobody asks for go too
                continue
            if job is None or self._cancel.is_set():
                break
            with self._lock:
                if job.id in self._cancelled:
                    continue
            self._set(job.id, state="running")
            try:
                notes = run_video(job, self._set, lambda job_id=job.id: self._stop_reason(job_id))
                self._set(job.id, state="done", progress=1.0, eta_seconds=0.0, notes=tuple(notes))
            except Cancelled:
                _emptied(self.folder / job.id)
                self._set(job.id, state="cancelled", eta_seconds=None)
            except CartoonError as e:  # the server's folders are not the client's business
                self._set(job.id, state="failed", error=without_folder(str(e), self.folder / job.id))
            except Exception as e:  # one line to the client; the worker lives on
                self._set(job.id, state="failed", error=f"the video could not be processed ({type(e).__name__})")
            finally:
                job.upload.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    (self.folder / job.id).touch()


def _emptied(folder: Path) -> None:
    """A job's files removed; the empty folder stays, its time the job's end (``_expire``)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(exist_ok=True)


def run_video(job: Job, report, stop_reason) -> list[str]:
    """The clip through a file stream into ``job.result`` (audio and timestamps kept, as
    ``cartoon-video``); ``report(id, **state)`` gets the progress; ``stop_reason()`` says
    when it must stop. Progress is by frames while the upload's count holds, then by the
    frames' place in its duration (a count from a wrong rate must not read 100 %)."""
    from ..runners.video import run_video as run

    t0 = time.monotonic()

    def tick(frame, done: int, expected) -> None:
        if (why := stop_reason()) == "cancelled":
            raise Cancelled(why)
        if why:
            raise InputError(why)
        if frame.seconds > job.max_seconds + 1:
            raise InputError(f"the video runs past the {job.max_seconds:.0f} s limit its header promised to keep")
        if done % 5 == 0 or done == job.frames_total:
            total = job.frames_total
            if done >= total:  # the count was short: estimate again from where the frame lies in time
                total = done + max(1, round(done * (job.seconds - frame.seconds) / max(frame.seconds, 1e-3)))
            rate = done / max(time.monotonic() - t0, 1e-6)
            report(
                job.id, frames_done=done, frames_total=total, progress=done / total, eta_seconds=(total - done) / rate
            )

    done = run(job.options, job.upload, job.result, tick)
    report(job.id, frames_done=done.frames, frames_total=done.frames)
    return [*done.notes] + ([done.warning] if done.warning else [])


def without_folder(text: str, folder: Path) -> str:
    """``text`` with ``folder`` and its separator left out, however the OS spells it."""
    for spelling in {str(folder), folder.as_posix(), os.path.realpath(folder)}:
        for sep in ("/", "\\"):
            text = text.replace(spelling + sep, "")
    return text
