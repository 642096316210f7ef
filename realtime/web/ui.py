"""The Gradio UI: Photo, Batch, Video, Live and Overlay tabs over the same ``Studio`` the
HTTP API uses. Errors show as one line (``gr.Error``), never a trace."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import threading
import time
from pathlib import Path

import gradio as gr

from ..compose import BACKGROUNDS
from ..errors import CartoonError
from .studio import SIZES, Look, Studio
from .upload_paths import UploadPaths
from .uploads import check_size


class JobsBySession:
    """Which video job each page (Gradio session) is waiting on, so its Cancel button can
    stop that one; one lock around a dict no other code sees."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: dict[str, str] = {}

    def get(self, session: str) -> str | None:
        with self._lock:
            return self._jobs.get(session)

    @contextlib.contextmanager
    def holding(self, session: str, job: str):
        with self._lock:
            self._jobs[session] = job
        try:
            yield
        finally:
            with self._lock:
                self._jobs.pop(session, None)


def _followed(studio: Studio, job: str, progress):
    """The job's progress shown until it ends; its last state."""
    while True:
        st = studio.jobs.state(job)
        if st is None or st.state in ("done", "failed", "cancelled"):
            return st
        if st.state == "queued":
            progress(0, desc=f"queued: {st.position} job(s) ahead")
        elif st.state == "running":
            eta = f", about {st.eta_seconds:.0f} s left" if st.eta_seconds is not None else ""
            progress((st.frames_done, max(st.frames_total, 1)), desc=f"frame {st.frames_done}{eta}", unit="frames")
        time.sleep(0.5)


def _said(fn):
    """A UI handler whose failures are one line in the page."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CartoonError as e:
            raise gr.Error(str(e)) from None
        except gr.Error:
            raise
        except Exception as e:
            raise gr.Error(f"unexpected {type(e).__name__}; the server's log has the details") from None

    return run


def _name(path) -> str:
    """What the user called the file (Gradio keeps the client's name as the last part)."""
    return Path(str(path)).name


def build(studio: Studio) -> gr.Blocks:
    o = studio.options
    styles = studio.styles()

    def look_controls(with_size: bool = True):
        with gr.Row():
            fixed = "fixed: this server runs the graphs of its --model-dir" if o.model_dir else None
            style = gr.Dropdown(styles, value=o.style, label="Style", interactive=len(styles) > 1, info=fixed)
            strength = gr.Slider(0.0, 1.0, value=o.strength, step=0.05, label="Strength")
            background = gr.Dropdown(list(BACKGROUNDS), value=o.background, label="Background")
        size = fmt = None
        if with_size:
            with gr.Row():
                size = gr.Radio(list(SIZES), value="original", label="Output size (short side)")
                fmt = gr.Radio(["same", "png", "jpg", "webp"], value="same", label="Format")
        return style, strength, background, size, fmt

    def outfile(data: bytes, ext: str) -> str:
        studio.sweep()
        folder = studio.folder / "ui"
        folder.mkdir(exist_ok=True)
        path = folder / f"{secrets.token_hex(6)}.{ext}"
        path.write_bytes(data)
        return str(path)

    @_said
    def photo(path, style, strength, background, size, fmt):
        if not path:
            raise gr.Error("upload a photo first")
        check_size(Path(path), studio.limits.image_bytes, "--max-image-mb")
        p = studio.photo(
            Path(path), _name(path), Look(style, strength, size, None if fmt == "same" else fmt, background)
        )
        said = f"{p.faces} face(s) · {p.format.upper()} · {len(p.data) / 1024:.0f} KB"
        return outfile(p.data, p.format), "  \n".join([said, *p.notes])

    @_said
    def batch(paths, style, strength, background, size, fmt, progress=gr.Progress()):  # noqa: B008 - Gradio's way
        if not paths:
            raise gr.Error("upload one or more images first")
        files = []
        for p in paths:  # one file over the limit is a line of the report, not the end of the batch
            try:
                check_size(Path(p), studio.limits.image_bytes, "--max-image-mb")
                files.append((Path(p), _name(p)))
            except CartoonError as e:
                files.append((e, _name(p)))
        progress(0, desc="starting")
        zip_path, report = studio.batch(
            files,
            Look(style, strength, size, None if fmt == "same" else fmt, background),
            lambda done, total: progress((done, total), desc=f"{done} of {total}", unit="images"),
        )
        rows = [[r["input"], r["output"] or "", r["status"], r["error"] or ""] for r in report]
        ok = sum(r["status"] == "ok" for r in report)
        return str(zip_path), rows, f"{ok} of {len(report)} done"

    running = JobsBySession()

    @_said
    def video(path, style, strength, background, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        if not path:
            raise gr.Error("upload a video first")
        check_size(Path(path), studio.limits.video_bytes, "--max-video-mb")
        # the job owns (and removes) its upload: it gets a copy, Gradio keeps its own file
        copy = studio.folder / f"upload-{secrets.token_hex(6)}"
        shutil.copyfile(path, copy)
        try:
            job = studio.submit_video(copy, _name(path), Look(style, strength, None, None, background))
        except BaseException:
            copy.unlink(missing_ok=True)
            raise
        with running.holding(request.session_hash, job):
            st = _followed(studio, job, progress)
        if st is not None and st.state == "cancelled":
            raise gr.Error("the video job was cancelled")
        if st is None or st.state == "failed":
            raise gr.Error(st.error if st else "the job was removed")
        result, _ = studio.jobs.result(job)
        notes = "  \n".join(st.notes)
        return str(result), str(result), f"{st.frames_total} frames" + (f"  \n{notes}" if notes else "")

    @_said
    def cancel_video(request: gr.Request):
        job = running.get(request.session_hash)
        if job is None:
            return "no video job of this page is running"
        st = studio.jobs.cancel(job)
        return "cancelled" if st is not None and st.state in ("cancelled", "cancelling") else "nothing to cancel"

    @_said
    def set_live(style, strength, background, overlay_heads_only):
        now = studio.set_live(style, strength, "transparent" if overlay_heads_only else background)
        return f"live: {now['style']}, strength {now['strength']:.2f}, background {now['background']}"

    with gr.Blocks(title="cartoon-cam", delete_cache=(900, 3600)) as ui:
        gr.Markdown("# cartoon-cam\nYour photos, videos and camera as a DCT-Net cartoon.")
        with gr.Tab("Photo"):
            with gr.Row():
                p_in = gr.Image(  # image_mode None: the file as uploaded, never decoded before our checks
                    type="filepath", image_mode=None, label="Photo", sources=["upload", "clipboard"], elem_id="photo-in"
                )
                p_out = gr.Image(type="filepath", label="Cartoon", interactive=False, elem_id="photo-out")
            p_look = look_controls()
            p_go = gr.Button("Cartoonize", variant="primary", elem_id="photo-go")
            p_said = gr.Markdown(elem_id="photo-said")
            p_go.click(photo, [p_in, *p_look], [p_out, p_said])
        with gr.Tab("Batch"):
            b_in = gr.File(file_count="multiple", label="Images (PNG, JPEG, WebP)", elem_id="batch-in")
            b_look = look_controls()
            b_go = gr.Button("Cartoonize all", variant="primary", elem_id="batch-go")
            b_said = gr.Markdown(elem_id="batch-said")
            b_zip = gr.File(label="Results (zip)", interactive=False, elem_id="batch-zip")
            b_table = gr.Dataframe(headers=["input", "output", "status", "error"], label="Files", elem_id="batch-table")
            b_go.click(batch, [b_in, *b_look], [b_zip, b_table, b_said])
        with gr.Tab("Video"):
            with gr.Row():
                v_in = gr.File(label="Clip (MP4, MOV, MKV, WebM...)", elem_id="video-in")
                v_out = gr.Video(label="Cartoon", interactive=False, elem_id="video-out")
            v_look = look_controls(with_size=False)
            with gr.Row():
                v_go = gr.Button("Cartoonize video", variant="primary", elem_id="video-go")
                v_stop = gr.Button("Cancel", elem_id="video-cancel")
            v_said = gr.Markdown(elem_id="video-said")
            v_file = gr.File(label="Download", interactive=False, elem_id="video-file")
            v_go.click(video, [v_in, *v_look[:3]], [v_out, v_file, v_said])
            v_stop.click(cancel_video, None, v_said)
        with gr.Tab("Live"):
            gr.Markdown("Your camera, streamed to this server and back as a cartoon.")
            gr.HTML(
                '<iframe src="/live" allow="camera" style="width:100%;height:560px;border:0" id="live-frame"></iframe>'
            )
        with gr.Tab("Overlay"):
            gr.Markdown(
                "Add **[/overlay](/overlay)** of this server as an OBS Browser Source (the size of your camera); "
                "it shows this server's live stream (the Live tab). Changes here apply at once. "
                "(`cartoon-cam --overlay` serves its own page and takes `POST /api/v1/live` on its own port.)"
            )
            l_style, l_strength, l_background, _, _ = look_controls(with_size=False)
            l_heads = gr.Checkbox(value=True, label="Heads only, on a transparent page", elem_id="overlay-heads")
            l_go = gr.Button("Apply", elem_id="overlay-apply")
            l_said = gr.Markdown(elem_id="overlay-said")
            l_go.click(set_live, [l_style, l_strength, l_background, l_heads], l_said)
    return ui


def mount(app, studio: Studio):
    """The UI at ``/`` of ``app``; Gradio's own uploads are held to the video limit and kept
    in the studio's folder, removed with it when the server stops."""
    os.environ["GRADIO_TEMP_DIR"] = str(studio.folder / "gradio")  # read by Gradio as files arrive
    blocks = build(studio)
    app = gr.mount_gradio_app(
        app, blocks, path="/", max_file_size=studio.limits.video_bytes, show_error=True, footer_links=[]
    )
    # Gradio checks that a file named in a request is one uploaded to it only once
    # ``launch()`` has run, which a mounted app never calls: without this a request could
    # name any file on the server.
    blocks.has_launched = True
    app.add_middleware(UploadPaths, root=os.environ["GRADIO_TEMP_DIR"])  # the page never sees where files lie
    return app
