"""Faces and alignment: landmarks where they are on the shared media, the aligned crop's
eyes on the reference points, and the similarity fit itself."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
from conftest import asset

from realtime.align import CROP, align_matrix, reference_points, similarity, transform_points, warp_crops
from realtime.errors import ModelError
from realtime.faces import FaceFinder

# Measured once by eye and by the landmarker on portrait_1024.png: pupils, nose tip, mouth corners.
PORTRAIT_POINTS = np.array([[531, 152], [640, 134], [595, 215], [567, 264], [643, 254]], np.float32)


@pytest.fixture(scope="module")
def finder(assets):
    with FaceFinder(asset(assets, "models/face_landmarker.task"), max_faces=6) as f:
        yield f


@pytest.fixture(scope="module")
def portrait(assets):
    return cv2.imread(str(asset(assets, "media/portrait_1024.png")))


def test_portrait_landmarks(finder, portrait):
    faces = finder.find(portrait)
    assert len(faces) == 1
    f = faces[0]
    assert np.abs(f.points - PORTRAIT_POINTS).max() < 6.0
    assert f.points[0, 0] < f.points[1, 0] and f.points[3, 0] < f.points[4, 0]  # image-left first
    assert f.oval.shape == (36, 2) and 0.8 < f.score <= 1.0
    x0, y0, x1, y1 = f.box()
    assert x0 < f.points[:, 0].min() and f.points[:, 0].max() < x1 and y0 < f.points[:, 1].min() < y1


def test_video_frames_tracked(assets):
    """VIDEO mode on the classroom clip: one face, about 180 px wide, moving little."""
    centres = []
    with (
        FaceFinder(asset(assets, "models/face_landmarker.task"), video=True) as finder,
        av.open(str(asset(assets, "media/classroom_720p25.mp4"))) as c,
    ):
        for i, frame in enumerate(c.decode(video=0)):
            if i >= 25:
                break
            faces = finder.find(frame.to_ndarray(format="bgr24"), int(frame.time * 1000))
            assert len(faces) == 1
            x0, _, x1, _ = faces[0].box()
            assert 140 < x1 - x0 < 230
            centres.append(faces[0].points.mean(axis=0))
    centres = np.array(centres)
    assert np.abs(np.diff(centres, axis=0)).max() < 6.0  # small head motion, no jumps
    assert 800 < centres[:, 0].mean() < 960 and 100 < centres[:, 1].mean() < 260


def test_six_faces_and_the_limit(assets, finder, portrait):
    tile = cv2.resize(portrait[0:600, 300:900], (400, 400), interpolation=cv2.INTER_AREA)
    six = np.vstack([np.hstack([tile, tile[:, ::-1], tile]), np.hstack([tile[:, ::-1], tile, tile[:, ::-1]])])
    assert len(finder.find(six)) == 6
    with FaceFinder(asset(assets, "models/face_landmarker.task"), max_faces=4) as four:
        assert len(four.find(six)) == 4
    assert finder.find(np.full((480, 640, 3), 200, np.uint8)) == []


def test_aligned_crop_puts_eyes_on_the_reference(finder, portrait):
    face = finder.find(portrait)[0]
    m = align_matrix(face.points)
    crop = warp_crops(portrait, [m])[0]
    assert crop.shape == (CROP, CROP, 3)
    again = finder.find(crop)
    assert len(again) == 1
    ref = reference_points()
    assert np.abs(again[0].points[:2] - ref[:2]).max() < 3.0  # the landmarker agrees on the crop
    assert np.abs(transform_points(m, face.points) - ref).max() < 8.0  # the fit itself: a best compromise


def test_similarity_fit():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 500, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -40.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = similarity(src, src @ rot.T + shift)
    assert np.allclose(m[:, :2], rot) and np.allclose(m[:, 2], shift)
    mirrored = src * [-1, 1]
    m2 = similarity(mirrored, src)
    assert np.linalg.det(m2[:, :2]) > 0  # never a reflection


def test_not_a_task_bundle(tmp_path):
    bad = tmp_path / "face_landmarker.task"
    bad.write_bytes(b"nope")
    with pytest.raises(ModelError, match=r"face_landmarker\.task"):
        FaceFinder(bad)


def test_native_logs_are_silenced_only_while_mediapipe_runs(capfd):
    """Descriptor 2 is muted while any MediaPipe call is in flight, on any thread, and given
    back when the last one ends: nothing of ours written after it may be lost."""
    import os
    import threading

    from realtime.faces import _native_stderr_silenced

    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a():
        with _native_stderr_silenced():
            a_in.set()
            b_in.wait()
        a_out.set()

    t = threading.Thread(target=a)
    t.start()
    a_in.wait()
    with _native_stderr_silenced():
        b_in.set()
        a_out.wait()  # the other call has ended while this one runs: still muted
        os.write(2, b"native log\n")
    t.join()
    os.write(2, b"ours\n")
    assert capfd.readouterr().err == "ours\n"


def _crop_error(found: np.ndarray, other: np.ndarray) -> float:
    """How far (288-crop pixels, worst corner) the crop aligned on ``other`` lies from the
    crop aligned on ``found``: what a head pasted on one would be off by on the other."""
    corners = np.array([[0, 0], [CROP, 0], [0, CROP], [CROP, CROP]], np.float64)
    back = cv2.invertAffineTransform(align_matrix(other))
    return float(np.abs(transform_points(align_matrix(found), transform_points(back, corners)) - corners).max())


@pytest.mark.parametrize("every", [2, 3])
def test_followed_faces_land_where_the_finder_finds_them(assets, tmp_path, every):
    """Live runs the landmarker on every 3rd frame and follows the faces by optical flow in
    between. On two people at live work size (512x288), one walking in, a followed face's
    crop lies nearer the one the landmarker makes on that frame (measured, every 2nd / 3rd:
    median 1.7 / 1.7, worst 4.9 / 4.8 px of 288) than the landmarker's crops of consecutive
    frames lie to each other (2.5 / 2.3, 5.6 / 6.1 px): following adds less than the
    landmarker's own jitter."""
    from media import frames_of, two_face_clip

    from realtime.faces import FaceFollower

    src = frames_of(two_face_clip(assets, tmp_path / "two.mp4", size=(512, 288), seconds=4))
    model = asset(assets, "models/face_landmarker.task")
    with FaceFinder(model, video=True) as finder:
        found = [finder.find(im, 40 * i) for i, im in enumerate(src)]
    followed = []
    with FaceFollower(FaceFinder(model, video=True), every=every) as follower:
        for i, im in enumerate(src):
            finds = follower.finds
            faces = follower.find(im, 40 * i)
            if follower.finds == finds:
                followed.append((i, faces))
    cadence = -(-len(src) // every)  # finder frames if nothing is lost
    assert cadence <= len(src) - len(followed) <= cadence + 2  # she is lost where she leaves
    errors, steps = [], []
    for i, faces in followed:
        if any(len(found[j]) != len(found[j - 1]) for j in range(max(1, i - every + 2), i + 1)):
            continue  # she came or went since the last finder frame: the follower sees it at the next
        assert len(faces) == len(found[i])
        for face in faces:
            same = min(found[i], key=lambda f: np.linalg.norm(f.centre - face.centre))
            before = min(found[i - 1], key=lambda f: np.linalg.norm(f.centre - same.centre))
            errors.append(_crop_error(same.points, face.points))
            steps.append(_crop_error(same.points, before.points))
    assert len(errors) > 60  # both people, on most followed frames
    assert np.median(errors) < 0.8 * np.median(steps) and max(errors) < 8.0, (np.median(errors), max(errors))


def test_a_cut_makes_the_follower_look_again(assets, portrait):
    """A followed point whose patch no longer matches (a cut, a hand over the face) is lost;
    a face that loses half its points makes the frame a landmarker frame."""
    from realtime.faces import FaceFollower

    classroom = next(iter(_classroom_frames(assets, 1)))
    other = cv2.resize(portrait, (classroom.shape[1], classroom.shape[0]), interpolation=cv2.INTER_AREA)
    with FaceFollower(FaceFinder(asset(assets, "models/face_landmarker.task"), video=True), every=4) as follower:
        (boy,) = follower.find(classroom, 0)
        (woman,) = follower.find(other, 40)
        assert follower.finds == 2
    assert np.linalg.norm(woman.centre - boy.centre) > 100


def test_a_new_stream_starts_with_the_finder(assets, tiny_models):
    """Live stylizers follow faces between finder frames; a stream never follows what the
    last one (another session of the web app) left: its first frame is a finder frame."""
    from realtime.faces import FaceFollower
    from realtime.options import Options
    from realtime.pipeline import Stylizer

    frames = list(_classroom_frames(assets, 3))
    o = Options(model_dir=tiny_models, face_model=asset(assets, "models/face_landmarker.task"), quiet=True)
    with Stylizer(o.replace(face_every=2), mode="live") as st:
        assert isinstance(st.finder, FaceFollower)
        st.tracks()
        st.finder.find(frames[0], 0)
        st.finder.find(frames[1], 40)
        assert st.finder.finds == 1  # the 2nd frame was followed
        st.finder.find(frames[2], 80)
        assert st.finder.finds == 2
        st.tracks()  # the next stream, whose first frame would have been followed
        st.finder.find(frames[0], 120)
        assert st.finder.finds == 3
    with Stylizer(o.replace(face_every=2), mode="image") as st:
        assert isinstance(st.finder, FaceFinder)  # a still has nothing to follow from


def _classroom_frames(assets, n: int):
    with av.open(str(asset(assets, "media/classroom_720p25.mp4"))) as c:
        for _, frame in zip(range(n), c.decode(video=0), strict=False):
            yield frame.to_ndarray(format="bgr24")
