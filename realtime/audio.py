"""The source's audio into an output file: packets copied untouched where the container holds
their codec, else transcoded to its default; interleaved by time with the video, up to the
time the video has reached; damaged packets (the torn end of a cut file) left out."""

from __future__ import annotations

from pathlib import Path

import av


class AudioCopier:
    """Every audio stream of ``src`` into the open output container ``out``; ``audio``: the
    container's audio encoder for a codec it cannot hold. ``notes``: what is not carried."""

    def __init__(self, src: Path, out, audio: str):
        self.out = out
        self.notes: list[str] = []
        self.dropped = 0
        self._pairs: list = []
        self._pending = None
        self._input = av.open(str(src), metadata_errors="replace")
        left = [s.type for s in self._input.streams if s.type not in ("video", "audio")]
        if left:
            self.notes.append(f"{src.name}'s {', '.join(sorted(set(left)))} streams are not carried over")
        for s in self._input.streams.audio:
            if s.codec_context.name in out.supported_codecs:
                self._pairs.append((s, out.add_stream_from_template(s), None))
            else:
                stream = out.add_stream(audio, rate=48000 if audio == "libopus" else (s.rate or 48000))
                fmt = stream.codec_context.codec.audio_formats[0].name
                self._pairs.append((s, stream, av.AudioResampler(format=fmt, layout=s.layout, rate=stream.rate)))
        self._packets = self._input.demux(*self._input.streams.audio) if self._pairs else iter(())

    def mux_until(self, seconds: float | None) -> None:
        """Copy audio packets up to ``seconds`` (None: all that remain)."""
        streams = {p[0].index: p for p in self._pairs}
        while True:
            try:
                pkt = self._pending or next(self._packets, None)
            except av.FFmpegError:  # the audio of a damaged file ends here
                pkt = None
            self._pending = None
            if pkt is None:
                return
            if pkt.dts is None:
                continue
            if seconds is not None and float(pkt.dts * pkt.time_base) > seconds:
                self._pending = pkt
                return
            _, stream, resampler = streams[pkt.stream.index]
            try:
                frames = pkt.decode()  # checks the packet; the frames are needed to transcode
            except av.FFmpegError:
                frames = None
            if pkt.is_corrupt or frames is None:
                self.dropped += 1
                continue
            if resampler is None:
                pkt.stream = stream
                self.out.mux(pkt)
            else:
                for frame in frames:
                    for f in resampler.resample(frame):
                        self.out.mux(stream.encode(f))

    def flush(self) -> None:
        """The transcoders' last packets."""
        for _, stream, resampler in self._pairs:
            if resampler is not None:
                self.out.mux(stream.encode(None))

    def close(self) -> None:
        self._input.close()
