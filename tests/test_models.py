"""Model downloads against a local ModelScope-shaped HTTP server: a normal pull, an
interrupted one that resumes, a corrupted one that is rejected; offline errors; local dirs."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import numpy as np
import pytest
from conftest import asset

from realtime.errors import ModelError
from realtime.models import STYLES, download, find_model_files, pull_style, resolve_style

ANIME = STYLES["anime"]


class Hub(BaseHTTPRequestHandler):
    """State is per test (the ``hub`` fixture resets it); handlers are made per request."""

    files: ClassVar[dict[str, bytes]] = {}
    listed_sha: ClassVar[dict[str, str]] = {}
    serve_instead: ClassVar[dict[str, bytes]] = {}
    cut_once: ClassVar[set[str]] = set()
    cut_always: ClassVar[set[str]] = set()
    log: ClassVar[list[tuple[str, str | None]]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        Hub.log.append((self.path, self.headers.get("Range")))
        if url.path == f"/api/v1/models/{ANIME.model_id}/repo/files" and q.get("Revision") == ANIME.revision:
            files = [
                {"Name": n, "Path": n, "Type": "blob", "Size": len(b), "Sha256": Hub.listed_sha.get(n)}
                for n, b in Hub.files.items()
            ]
            files.append({"Name": "sub", "Path": "sub", "Type": "tree", "Size": 0})
            body = json.dumps({"Success": True, "Data": {"Files": files}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        name = q.get("FilePath")
        if url.path != f"/api/v1/models/{ANIME.model_id}/repo" or name not in Hub.files:
            self.send_error(404)
            return
        data = Hub.serve_instead.get(name, Hub.files[name])
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if name in Hub.cut_once or name in Hub.cut_always:  # promise everything, deliver half, hang up
            Hub.cut_once.discard(name)
            self.wfile.write(data[start : start + (len(data) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])


@pytest.fixture
def hub(monkeypatch, tmp_path):
    rng = np.random.default_rng(1)
    Hub.files = {
        "cartoon_anime_h.pb": rng.integers(0, 256, 3_000_000, dtype=np.uint8).tobytes(),
        "cartoon_anime_bg.pb": rng.integers(0, 256, 2_500_000, dtype=np.uint8).tobytes(),
        "alpha.jpg": b"\xff\xd8 not really a jpeg",
        "detector.pb": b"their detector, not ours",
    }
    Hub.listed_sha = {n: hashlib.sha256(b).hexdigest() for n, b in Hub.files.items()}
    Hub.serve_instead, Hub.cut_once, Hub.cut_always, Hub.log = {}, set(), set(), []
    monkeypatch.setattr("realtime.models.RETRIES", (0.05, 0.05, 0.05))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("CARTOON_CAM_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield tmp_path / "cache"
    server.shutdown()
    server.server_close()


def test_pull_downloads_verifies_and_places(hub):
    files = pull_style("anime", hub, quiet=True)
    assert files.head.read_bytes() == Hub.files["cartoon_anime_h.pb"]
    assert files.background.read_bytes() == Hub.files["cartoon_anime_bg.pb"]
    assert files.alpha is not None and files.alpha.read_bytes() == Hub.files["alpha.jpg"]
    assert not list(files.head.parent.glob("*.part")) and not (files.head.parent / "detector.pb").exists()
    assert files.head.parent == hub / "models" / ANIME.model_id / ANIME.revision
    n = len(Hub.log)
    assert resolve_style("anime", root=hub, quiet=True) == files and len(Hub.log) == n  # cached: no request


def test_a_dropped_connection_heals_in_the_same_run(hub):
    """A connection that drops mid-file is resumed at once where it stopped (HTTP Range):
    one flaky moment needs no second run."""
    Hub.cut_once = {"cartoon_anime_h.pb"}
    files = pull_style("anime", hub, quiet=True)
    part = hub / "models" / ANIME.model_id / ANIME.revision / "cartoon_anime_h.pb.part"
    assert files.head.read_bytes() == Hub.files["cartoon_anime_h.pb"] and not part.exists()
    ranges = [r for path, r in Hub.log if "cartoon_anime_h.pb" in path]
    assert ranges == [None, "bytes=1500000-"]


def test_a_connection_that_keeps_dropping_fails_then_resumes(hub):
    """Four tries, each resuming: then one line with what was kept, and a later run goes on."""
    Hub.cut_always = {"cartoon_anime_h.pb"}
    with pytest.raises(ModelError, match=r"cartoon_anime_h\.pb.*after 4 tries.*run again to resume.*--offline"):
        pull_style("anime", hub, quiet=True)
    part = hub / "models" / ANIME.model_id / ANIME.revision / "cartoon_anime_h.pb.part"
    assert part.stat().st_size == 3_000_000 - 3_000_000 // 2**4  # each try delivered half of what was left
    Hub.cut_always = set()
    files = pull_style("anime", hub, quiet=True)
    assert files.head.read_bytes() == Hub.files["cartoon_anime_h.pb"] and not part.exists()


def test_two_processes_download_a_file_once(hub, tmp_path):
    import subprocess
    import sys

    code = "import sys; from realtime.models import pull_style; pull_style('anime', sys.argv[1], quiet=True)"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(hub)]) for _ in range(2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    fetches = [path for path, _ in Hub.log if "FilePath=cartoon_anime_h.pb" in path]
    assert len(fetches) == 1 and (hub / "models" / ANIME.model_id / ANIME.revision / "cartoon_anime_h.pb").exists()


def test_corrupted_download_is_rejected(hub):
    good = Hub.files["cartoon_anime_bg.pb"]
    Hub.serve_instead = {"cartoon_anime_bg.pb": good[:-4] + b"EVIL"}
    with pytest.raises(ModelError, match=r"cartoon_anime_bg\.pb does not match its sha256"):
        pull_style("anime", hub, quiet=True)
    folder = hub / "models" / ANIME.model_id / ANIME.revision
    assert not (folder / "cartoon_anime_bg.pb").exists() and not (folder / "cartoon_anime_bg.pb.part").exists()


def test_size_is_checked_when_the_hub_gives_no_hash(hub, tmp_path):
    Hub.listed_sha = {}
    Hub.serve_instead = {"cartoon_anime_h.pb": Hub.files["cartoon_anime_h.pb"][:-10]}
    with pytest.raises(ModelError, match=r"is 2999990 bytes, the hub says 3000000"):
        pull_style("anime", hub, quiet=True)


def test_offline_never_touches_the_network(hub):
    with pytest.raises(ModelError, match=r"--offline.*cartoon_anime_h\.pb.*" + ANIME.model_id):
        resolve_style("anime", root=hub, offline=True)
    assert Hub.log == []


def test_unreachable_hub_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("CARTOON_CAM_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ModelError, match="cannot list files"):
        pull_style("anime", tmp_path, quiet=True)


def test_plain_download_with_hash(hub, tmp_path):
    from realtime.models import endpoint

    q = urllib.parse.urlencode({"Revision": ANIME.revision, "FilePath": "alpha.jpg"})
    dest = tmp_path / "x" / "alpha.jpg"
    download(
        f"{endpoint()}/api/v1/models/{ANIME.model_id}/repo?{q}", dest, sha256=Hub.listed_sha["alpha.jpg"], quiet=True
    )
    assert dest.read_bytes() == Hub.files["alpha.jpg"]
    with pytest.raises(ModelError, match="sha256"):
        download(
            f"{endpoint()}/api/v1/models/{ANIME.model_id}/repo?{q}", tmp_path / "y.jpg", sha256="0" * 64, quiet=True
        )


def test_local_model_dirs_accept_both_namings(assets, tmp_path):
    a = find_model_files(asset(assets, "models/dctnet/random"))
    b = find_model_files(asset(assets, "models/dctnet/identity"))
    assert (a.head.name, a.background.name) == ("cartoon_anime_h.pb", "cartoon_anime_bg.pb")
    assert (b.head.name, b.background.name) == ("cartoon_h.pb", "cartoon_bg.pb")
    with pytest.raises(ModelError, match="no cartoon_"):
        find_model_files(tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        find_model_files(tmp_path / "nope")
    with pytest.raises(ModelError, match="unknown style"):
        resolve_style("vaporwave", offline=True)


def test_an_unreachable_host_is_one_line_naming_the_way_offline(tmp_path, monkeypatch):
    """The first run without network: the face model's host cannot be reached and nothing
    was downloaded yet (no ``.part``). One ``ModelError`` naming --face-model and --offline,
    not a FileNotFoundError from formatting the missing part file's size."""
    import socket

    import realtime.models as models

    with socket.socket() as s:  # a port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/face_landmarker.task"
    monkeypatch.setattr(models, "FACE_MODEL_URL", closed)
    monkeypatch.setattr(models, "RETRIES", (0.0,))
    with pytest.raises(ModelError, match=r"face_landmarker\.task.*failed after 2 tries.*--face-model.*--offline") as e:
        models.resolve_face_model(root=tmp_path, quiet=True)
    assert "\n" not in str(e.value) and "bytes kept" not in str(e.value)
    assert not list((tmp_path / "models" / "mediapipe").glob("*.part"))
