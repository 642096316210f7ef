"""What assumed Linux, now taking the platform as a parameter: each degrades cleanly on
Windows and macOS. Only Linux runs here, so these check the choices made for the others
(and that asking for them on Linux raises nothing), not the other systems themselves."""

from __future__ import annotations

import errno
import io
import os
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest


def test_a_process_probe_on_windows_sends_no_signal(monkeypatch):
    """``os.kill(pid, 0)`` on Windows is GenerateConsoleCtrlEvent(CTRL_C_EVENT): the sweep of
    old uploads at every server start could interrupt the server itself."""
    from realtime import processes

    monkeypatch.setattr(os, "kill", lambda *a: pytest.fail("os.kill is no probe on Windows"))
    monkeypatch.setattr(processes, "windows_alive", lambda pid: pid == 1234)
    assert processes.alive(1234, platform="win32") and not processes.alive(4321, platform="win32")
    monkeypatch.undo()
    assert processes.alive(os.getpid()) and not processes.alive(2**22 + 12345)


def test_a_mac_camera_is_asked_for_a_rate_it_offers():
    """AVFoundation asks for 29.97 fps unless told, which most Mac cameras refuse: plain
    ``cartoon-cam`` could not open the camera."""
    from realtime.sources import camera_attempts, camera_input

    assert camera_input("0", system="Darwin") == ("avfoundation", "0:none")
    assert camera_attempts("avfoundation", None, None) == [{"framerate": "30"}, {"framerate": "15"}]
    assert camera_attempts("avfoundation", (1280, 720), 60.0) == [{"video_size": "1280x720", "framerate": "60.0"}]
    assert camera_attempts("v4l2", None, None) == [{"input_format": "mjpeg"}, {}]
    assert camera_attempts("dshow", (640, 480), 30.0, mjpeg=False) == [{"video_size": "640x480", "framerate": "30.0"}]


def test_a_windows_camera_index_with_an_old_pyav_says_how(monkeypatch):
    import av

    from realtime.errors import InputError
    from realtime.sources import camera_input

    assert camera_input("video=Integrated Camera", system="Windows") == ("dshow", "video=Integrated Camera")
    monkeypatch.delattr(av, "enumerate_input_devices", raising=False)
    with pytest.raises(InputError, match=r"cannot list cameras to find camera 0: pip install -U av, or name it"):
        camera_input("0", system="Windows")


def test_names_windows_will_not_take_are_refused_before_any_work(tmp_path):
    """``12:30.mp4`` on NTFS writes a stream of a file ``12``; ``NUL.mp4`` is the null device."""
    from realtime.errors import InputError
    from realtime.outputs import check_output

    for name, why in (
        ("12:30.mp4", "has ':', which Windows does not allow"),
        ("NUL.mp4", "is a device name on Windows (NUL)"),
        ("com1.png", "is a device name on Windows (com1)"),
        ("take 2.", "ends in a dot or a space"),
    ):
        with pytest.raises(InputError, match="^" + re.escape(f"the name {name} {why}")):
            check_output(tmp_path / name, platform="win32")
        check_output(tmp_path / name, platform="linux")  # a legal name here
    check_output(tmp_path / "nul-free.mp4", platform="win32")


def test_a_case_blind_file_system_sees_one_file(tmp_path):
    """macOS and Windows ignore case: ``a/Cat.jpg`` and ``b/cat.jpg`` into one folder were two
    outputs that overwrote each other."""
    from realtime.outputs import check_outputs, path_key

    assert path_key(tmp_path / "Cat.png", "darwin") == path_key(tmp_path / "cat.png", "darwin")
    assert path_key(tmp_path / "Cat.png", "linux") != path_key(tmp_path / "cat.png", "linux")
    # an input the OS cannot even stat (a DirectShow moniker on Windows; here a name too long)
    check_outputs(["@device_pnp_" + "x" * 5000, "video=Cam"], [tmp_path / "out.mp4"])


def test_a_closed_pipe_on_windows_is_a_gone_reader_and_odd_names_print():
    """Windows reports a reader gone (``| more`` quit) as EINVAL, not EPIPE; its consoles and
    pipes are cp1252, which cannot show a name like 写真.png (the work was done, the print
    failed)."""
    from realtime.console import TolerantStream, closed_pipe

    assert closed_pipe(OSError(errno.EINVAL, "Invalid argument"), platform="win32")
    assert not closed_pipe(OSError(errno.EINVAL, "Invalid argument"), platform="linux")
    assert closed_pipe(BrokenPipeError(), platform="linux")

    class Gone(io.StringIO):
        def write(self, text):
            raise OSError(errno.EINVAL, "Invalid argument")

    stream = TolerantStream(Gone())
    try:
        if os.name == "nt":  # pragma: no cover - what Windows does
            assert stream.write("x") == 1
        else:
            with pytest.raises(OSError):
                stream.write("x")
    finally:
        stream.stream = io.StringIO()
    raw = io.BytesIO()
    cp1252 = io.TextIOWrapper(raw, encoding="cp1252")
    TolerantStream(cp1252).write("wrote 写真.png\n")
    cp1252.flush()
    assert raw.getvalue() == b"wrote \\u5199\\u771f.png\n"


def test_a_windows_server_never_shares_its_port():
    """SO_REUSEADDR on Windows binds a port another server listens on: a second cartoon-web
    came up silently on the same port. ``::`` takes IPv4 too, as its printed address says."""
    from realtime.web import bind, socket_options

    win = socket_options("127.0.0.1", platform="win32")
    assert all(option != socket.SO_REUSEADDR for _, option, _ in win) and len(win) == 1
    assert (socket.SOL_SOCKET, socket.SO_REUSEADDR, 1) in socket_options("127.0.0.1", platform="linux")
    assert (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0) in socket_options("::", platform="win32")
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        sock = bind("::", 0)
    except Exception as e:  # a machine with IPv6 turned off
        pytest.skip(f"cannot bind ::: {e}")
    with sock, socket.create_connection(("127.0.0.1", sock.getsockname()[1]), timeout=5):
        pass  # IPv4 reaches the IPv6 socket


def test_engine_threads_give_way_on_every_system():
    """Linux's idle class; Windows' idle thread priority; macOS's background band. Asked for
    on Linux, the others raise nothing."""
    from realtime.stream.live import lower_priority

    assert lower_priority(None, platform="win32") is None and lower_priority(5, platform="darwin") is None
    got = {}

    def engine_thread():
        got["set"] = lower_priority(None)
        got["policy"] = os.sched_getscheduler(0)

    t = threading.Thread(target=engine_thread)
    t.start()
    t.join()
    assert got == {"set": "SCHED_IDLE", "policy": os.SCHED_IDLE}
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's thread is untouched


def test_the_doctor_reads_a_macs_cpu_and_says_when_it_cannot():
    """/proc/cpuinfo is Linux's: every Mac and Windows machine was said to have "no AVX2"."""
    from realtime import doctor

    sysctl = {
        "sysctl -n machdep.cpu.brand_string": "Apple M2\n",
        "sysctl hw.optional": "hw.optional.arm.FEAT_DotProd: 1\nhw.optional.arm.FEAT_BF16: 1\nhw.optional.avx2_0: 0\n",
    }
    mac = doctor.cpu("Darwin", read=lambda what: sysctl.get(what, ""))
    assert mac["model"] == "Apple M2" and mac["units"] == ["Arm dot product"]
    windows = doctor.cpu("Windows", read=lambda what: "")
    assert windows["units"] is None
    report = {"system": "Windows 11", "cpu": windows, "backends": [], "engines": {}, "cameras": [],
              "gpus": {"nvidia": [], "driver": None, "nvidia_smi": False, "torch": "torch"},
              "virtual_camera": "-", "cache": {"folder": "c", "free_gb": 1}, "hub": "-"}  # fmt: skip
    assert "vector units not read on this OS" in doctor.render(report) and "no AVX2" not in doctor.render(report)


def test_server_folders_are_left_out_of_errors_however_spelt(tmp_path):
    from realtime.web.jobs import without_folder
    from realtime.web.upload_paths import UploadPaths

    assert without_folder(r"C:\Temp\job1\in.mp4 is damaged", Path(r"C:\Temp\job1")) == "in.mp4 is damaged"
    assert without_folder(f"{tmp_path}/in.mp4 is damaged", tmp_path) == "in.mp4 is damaged"
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")  # macOS's /var is a link to /private/var
    assert UploadPaths(None, str(tmp_path / "link")).root == str((tmp_path / "real").resolve()) + os.sep


def test_files_under_any_name_load(tmp_path):
    """cv2.imread cannot open a Windows path outside the ANSI code page (a user name in
    Chinese, say): the head mask is read from its bytes."""
    import cv2

    from realtime.compose import load_alpha

    path = tmp_path / "模型" / "alpha.jpg"
    path.parent.mkdir()
    path.write_bytes(cv2.imencode(".jpg", np.full((64, 64), 255, np.uint8))[1].tobytes())
    assert load_alpha(path, size=32).shape == (32, 32)


def test_no_console_no_crash(monkeypatch):
    """pythonw (no console): sys.stderr is None and fd 2 is not open; MediaPipe's quieting
    of it must not fail every call."""
    import sys

    from realtime.faces import _NativeStderrSilencer

    monkeypatch.setattr(sys, "stderr", None)
    quiet = _NativeStderrSilencer()
    with quiet(), quiet():
        pass
    assert quiet._saved == -1
