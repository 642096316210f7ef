"""The Python API in a few lines: a photo, then the first seconds of a video, stylized.

    python demos/api_example.py PHOTO VIDEO OUT_DIR [--model-dir DIR] [--face-model PATH]

Without --model-dir the anime style is downloaded on first use (about 12 MB).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import cv2

from realtime import FileSource, Options, Stream, Stylizer, VideoFileSink


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("photo", type=Path)
    p.add_argument("video", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--model-dir", type=Path)
    p.add_argument("--face-model", type=Path)
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    options = Options(model_dir=args.model_dir, face_model=args.face_model, work_size=360)

    # A still: one call per image; the result also lists the faces found.
    with Stylizer(options) as stylizer:
        result = stylizer.run(cv2.imread(str(args.photo)))
        cv2.imwrite(str(args.out_dir / "photo.png"), result.image)
        print(f"photo: {len(result.faces)} face(s)")

    # A video: frames keep their timestamps; the sink copies the audio. Sources, sinks and
    # the stylizer are context managers; a "file" stylizer tracks faces from frame to frame.
    with (
        FileSource(args.video) as source,
        Stylizer(options, mode="file") as stylizer,
        VideoFileSink(args.out_dir / "clip.mp4", *source.frame_size, source.fps, source.time_base, args.video) as sink,
    ):
        clip = itertools.takewhile(lambda f: f.seconds < args.seconds, source)
        stats = Stream(stylizer).run(clip, [sink])
        sink.close(complete=False)  # audio up to the last frame written
    print(f"video: {stats.frames} frames at {stats.fps:.1f} fps -> {args.out_dir / 'clip.mp4'}")


if __name__ == "__main__":
    main()
