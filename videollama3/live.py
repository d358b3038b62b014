"""Live sources: a network stream, a camera, a pipe, or a file played at its own pace, read by a
thread that keeps only what the sampler needs.

The consumer (the encoder) may be slower than the source. A live source cannot wait for it, so the
reader thread never queues without bound: it decodes every frame (a stream must be read to stay
live), takes the frames the sampler wants (the first at or after each ``k / fps`` second of stream
time), and puts them in a small buffer; when the buffer is full the oldest waiting sample is
dropped and counted. Timestamps are the stream's, in seconds from its first frame.

``-`` reads a stream on standard input (``ffmpeg ... -f mpegts - | vl3mem answer -``); a URL is
opened by FFmpeg (``rtsp://``, ``http(s)://``, ``udp://``, HLS ``.m3u8``); ``/dev/videoN`` is a
V4L2 camera; a folder of numbered images is read as :class:`~videollama3.video.FrameFolder` reads
it (its ``frame_rate`` given), only the sampled images.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from .errors import VideoError
from .sampling import FrameSampler
from .video import FrameFolder, check_sampling, frame_image, video_stream

URL_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


def is_live_source(source: str) -> bool:
    """Whether ``source`` names a live source: ``-`` (standard input), a URL, or a V4L2 device."""
    return source == "-" or source.startswith(URL_SCHEMES) or source.startswith("/dev/video")


@dataclass
class LiveStats:
    """What a live source did.

    Attributes:
        decoded: frames decoded from the source.
        sampled: frames the sampler took (one per ``1 / fps`` seconds of stream time).
        dropped: sampled frames dropped because the consumer was behind.
        delivered: sampled frames handed to the consumer.
    """

    decoded: int = 0
    sampled: int = 0
    dropped: int = 0
    delivered: int = 0


class LiveSource:
    """Read ``source`` in a background thread; iterate for ``(frame (H, W, 3) uint8 RGB, timestamp_s)``.

    The source is opened here (so a bad one fails at once) and read from the first iteration on.

    Args:
        source: ``-``, a URL, a V4L2 device or a file (see the module docstring).
        fps: frames sampled per second of stream time (> 0).
        buffer: sampled frames held for a consumer that is behind (>= 1); beyond it the oldest is dropped.
        realtime: play the source at its own pace (for files; live sources are real time anyway).
        read_timeout: seconds without a frame after which the source counts as stopped.
        duration: stop after this many seconds of stream time (None: until the source ends).
        input_format: FFmpeg format name to force (``v4l2`` is used for ``/dev/video*``).
        drop: drop the oldest waiting sample when the buffer is full (live); False: the reader waits
            for room instead (a file read as fast as the consumer takes it, nothing lost).
        frame_rate: frames per second a frame folder's images were taken at (required for a folder).

    Raises:
        VideoError: when the source cannot be opened or has no video stream, or is a frame folder
            without a frame rate or image (one line).
    """

    def __init__(self, source: str, fps: float = 1.0, buffer: int = 2, realtime: bool = False,
                 read_timeout: float = 10.0, duration: float | None = None, input_format: str | None = None,
                 drop: bool = True, frame_rate: float | None = None) -> None:
        check_sampling(fps, path=source)
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1 frame, got {buffer}")
        self.source, self.fps, self.realtime = source, float(fps), realtime
        self.read_timeout, self.duration, self.drop = read_timeout, duration, drop
        self.stats = LiveStats()
        self._buffer: deque[tuple[np.ndarray, float]] = deque()
        self._capacity = buffer
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._end: BaseException | bool = False
        self._folder: FrameFolder | None = None
        self._container: Any = None
        if Path(source).is_dir() and source != "-":  # fails now, before a model is loaded, as the others do
            if frame_rate is None:
                raise VideoError(f"{source} is a frame folder; give the frame rate its images were taken at "
                                 "(--frame-rate)", source)
            self._folder = FrameFolder(source, frame_rate)
        else:
            self._container = self._open(source, input_format)
        self._thread = threading.Thread(target=self._read, name="vl3mem-live", daemon=True)

    def _open(self, source: str, input_format: str | None) -> Any:
        options = {"rw_timeout": str(int(self.read_timeout * 1e6))} if source.startswith(URL_SCHEMES) else {}
        if source.startswith("rtsp://"):
            options["rtsp_transport"] = "tcp"
        if source.startswith("/dev/video") and input_format is None:
            input_format = "v4l2"
        target: Any = sys.stdin.buffer if source == "-" else source
        if source != "-" and not source.startswith(URL_SCHEMES) and not Path(source).exists():
            raise VideoError(f"no such video source: {source}", source)
        # the first bytes of a pipe, read before FFmpeg consumes them: an MP4 box header names an MP4
        head = target.peek(12)[:12] if source == "-" and hasattr(target, "peek") else b""
        name = "standard input" if source == "-" else source
        try:
            container = av.open(target, format=input_format, options=options, timeout=self.read_timeout)
        except av.error.ExitError:  # FFmpeg gave up waiting: the timeout's interrupt, not a broken stream
            raise VideoError(f"nothing arrived from {name} within {self.read_timeout:g} s of opening it; check that "
                             "it is sending (--read-timeout sets how long to wait)", source) from None
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
            hint = ("; an MP4 read from a pipe needs its index first: remux it with ffmpeg -i IN -c copy -movflags "
                    "+faststart+frag_keyframe+empty_moov -f mp4 -, stream MPEG-TS (-f mpegts), or pass the file's "
                    "path") if head[4:8] == b"ftyp" else ""
            raise VideoError(f"cannot open {name} as a video stream ({e.__class__.__name__}: {e}){hint}",
                             source) from None
        if not container.streams.video:
            container.close()
            raise VideoError(f"{source} has no video stream", source)
        return container

    def _put(self, item: tuple[np.ndarray, float]) -> None:
        with self._ready:
            if not self.drop:
                while len(self._buffer) >= self._capacity and not self._stop.is_set():
                    self._ready.wait(0.05)
            if len(self._buffer) >= self._capacity:
                self._buffer.popleft()
                self.stats.dropped += 1
            self._buffer.append(item)
            self._ready.notify_all()

    def _decoded(self) -> Iterator[tuple[Any, float]]:
        """Every frame of the source as ``(frame, seconds from the first)``, in order: PyAV frames (turned
        into images only when sampled), or a frame folder's sampled images (the folder reads no other)."""
        if self._folder is not None:
            yield from self._folder.frames(fps=self.fps)
            return
        stream = video_stream(self._container)
        stream.thread_type = "AUTO"
        first = None
        for frame in self._container.decode(stream):
            if frame.time is not None:
                first = frame.time if first is None else first
                yield frame, frame.time - first

    def _read(self) -> None:
        sampler, started = FrameSampler(self.fps), time.monotonic()
        try:
            for frame, t in self._decoded():
                if self._stop.is_set():
                    break
                self.stats.decoded += 1
                if self.duration is not None and t > self.duration:
                    break
                if self.realtime:  # a file played at its own pace
                    delay = started + t - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                if not sampler.take(t):
                    continue
                self.stats.sampled += 1
                self._put((frame if self._folder is not None else frame_image(frame), round(t, 6)))
            end: BaseException | bool = True
        except (av.error.FFmpegError, OSError) as e:
            end = VideoError(f"reading {self.source} stopped ({e.__class__.__name__}: {e})", self.source)
        except VideoError as e:  # a frame folder's image that cannot be read
            end = e
        finally:
            if self._container is not None:
                self._container.close()
        with self._ready:
            self._end = end
            self._ready.notify()

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        """Sampled frames in time order, as they arrive.

        Raises:
            VideoError: when the source sends nothing for ``read_timeout`` seconds or breaks off
                (``stopped_at``: the last timestamp delivered).
        """
        last = None
        if not self._thread.is_alive() and self._end is False:  # reading starts when the consumer is ready
            self._thread.start()
        try:
            while True:
                with self._ready:
                    if not self._buffer and self._end is False:
                        self._ready.wait_for(lambda: self._buffer or self._end is not False, timeout=self.read_timeout)
                    if self._buffer:
                        item = self._buffer.popleft()
                        self._ready.notify_all()  # room for a reader that waits (drop=False)
                    elif isinstance(self._end, BaseException):
                        self._end.stopped_at = last
                        raise self._end
                    elif self._end:
                        return
                    else:
                        raise VideoError(f"{self.source} sent no frame for {self.read_timeout:g} s; it stopped "
                                         "sending (--read-timeout sets how long to wait)", self.source, stopped_at=last)
                self.stats.delivered += 1
                last = item[1]
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading (idempotent); the reader thread ends at its next frame."""
        self._stop.set()
