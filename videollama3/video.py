"""Frame decoding at a target frame rate, lazily: video files with PyAV, frame folders with Pillow."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from .errors import VideoError
from .gop import DecodedFrame, GopEnd, PastEnd, decode_gops, gop_workers
from .sampling import FrameSampler


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video stream.

    Attributes:
        path: the file.
        duration: seconds (from the stream, else the container; 0.0 when unknown).
        fps: average frame rate in frames per second (0.0 when unknown).
        width, height: frame size in pixels.
        num_frames: frames in the stream as the container reports it (0 when unknown).
    """

    path: str
    duration: float
    fps: float
    width: int
    height: int
    num_frames: int


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _open(path: str | Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.exists():
        raise VideoError(f"no such video file: {path}", str(path))
    if not path.is_file():
        raise VideoError(f"not a file: {path}", str(path))
    if path.stat().st_size == 0:
        raise VideoError(f"video file is empty: {path}", str(path))
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        hint = _missing_mp4_index(path)
        raise VideoError(f"cannot open {path} as a video ({e.__class__.__name__}: {e})"
                         + (f"; {hint}" if hint else ""), str(path)) from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path} has no video stream", str(path))
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        container.close()  # a still image (whatever its name says): no time to ask questions at
        raise VideoError(f"{path} is a still image ({container.format.name}), not a video; give a video file",
                         str(path))
    return container


def _missing_mp4_index(path: Path) -> str | None:
    """Why an MP4 / MOV file that FFmpeg cannot open is unreadable, when its top-level boxes say so: it
    ends inside a box, or before any ``moov`` box (the index of every frame, which many encoders
    write last, so a partial download or an interrupted recording has none). None when the file is
    not such a file or its boxes look whole.

    ISO/IEC 14496-12 box layout: a 32-bit big-endian size (1: a 64-bit size follows the type; 0: to
    the end of the file) and a 4-letter type.
    """
    size_on_disk = path.stat().st_size
    seen: list[bytes] = []
    try:
        with open(path, "rb") as f:
            offset = 0
            while offset + 8 <= size_on_disk:
                f.seek(offset)
                header = f.read(16)
                box_size, box_type = int.from_bytes(header[:4], "big"), header[4:8]
                if not seen and box_type != b"ftyp":
                    return None  # not an ISO media file
                seen.append(box_type)
                if box_size == 1 and len(header) == 16:
                    box_size = int.from_bytes(header[8:16], "big")
                elif box_size == 0:
                    box_size = size_on_disk - offset
                if box_size < 8:
                    return None
                if offset + box_size > size_on_disk:
                    return (f"the file is truncated: its {box_type.decode('latin-1')!r} box needs "
                            f"{offset + box_size} bytes and the file has {size_on_disk}"
                            + ("" if b"moov" in seen else ", and the frame index (the 'moov' box) is missing"))
                offset += box_size
    except OSError:
        return None
    if seen and b"moov" not in seen:
        return "the file has no frame index (no 'moov' box): a partial download or an interrupted recording"
    return None


def video_stream(container: av.container.InputContainer) -> av.VideoStream:
    """The video stream of ``container`` that is read: FFmpeg's choice (``av_find_best_stream``, as
    ``ffmpeg`` and ``ffplay`` make it), not the first, so a cover picture stored as a one-frame video
    stream before the video (an MKV's image attachment, a second camera) is not taken for it. The
    container has a video stream (:func:`_open` checks)."""
    return container.streams.best("video")


def _info(path: str | Path, container: av.container.InputContainer) -> VideoInfo:
    stream = video_stream(container)
    fps = float(stream.average_rate) if stream.average_rate else 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    return VideoInfo(str(path), duration, fps, stream.codec_context.width, stream.codec_context.height,
                     int(stream.frames or 0))


def check_sampling(fps: float | None, start: float = 0.0, end: float | None = None, path: str = "") -> None:
    """Check what :meth:`VideoReader.frames` samples: ``fps`` a positive number of samples a second (or
    None: every frame), ``start`` a finite number of seconds >= 0, ``end`` None or a number of seconds not
    before ``start``.

    Raises:
        VideoError: naming the bad value (``path``: the video it was asked of).
    """
    def real(x: Any) -> bool:
        return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)

    if fps is not None and not (real(fps) and math.isfinite(fps) and fps > 0):
        raise VideoError(f"fps must be a positive number, got {fps!r}", path)
    if not (real(start) and math.isfinite(start) and start >= 0):
        raise VideoError(f"start must be a number of seconds >= 0, got {start!r}", path)
    if end is not None and not (real(end) and end >= start):  # NaN fails this too
        raise VideoError(f"end must be a number of seconds not before start ({start!r} s), got {end!r}", path)


class VideoReader:
    """One open video: what its container says (:attr:`info`) and its frames, from a single open.

    Use as a context manager (``with open_video(path) as video: ...``) or call :meth:`close`.
    The first :meth:`frames` iteration reads from the open made for :attr:`info`; the file is
    closed when it ends, and a later :meth:`frames` call opens it again (one iteration at a time).

    Args:
        path: the video file.

    Raises:
        VideoError: when the file is missing, empty, not a video or has no video stream.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._container = _open(path)
        self.info = _info(path, self._container)
        self._closed = False
        self._reader_of: VideoFrames | None = None  # the iteration reading the container now

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the container (idempotent); an iteration still reading it ends."""
        self._container.close()
        self._closed = True
        self._reader_of = None

    def _claim(self, frames: VideoFrames) -> None:
        """Give the container to the iteration ``frames`` as it starts: the open one, or the file opened
        again when an earlier iteration (or :meth:`close`) closed it.

        Raises:
            VideoError: while another iteration of this reader is reading, or when the file cannot be
                opened again.
        """
        if self._reader_of is frames:
            return
        if self._reader_of is not None:
            raise VideoError(f"the frames of {self.path} are being read by another iteration of this reader; "
                             "finish or close it first, or open the video again (open_video) to read it twice at "
                             "once", self.path)
        if self._closed:
            self._container = _open(self.path)
            self._closed = False
        self._reader_of = frames

    def frames(self, fps: float | None = 1.0, start: float = 0.0, end: float | None = None) -> VideoFrames:
        """``(frame, timestamp_s)`` sampled at ``fps``, decoded lazily as they are iterated (see
        :func:`iter_frames`); :func:`decode_ahead` of the result decodes them ahead in background threads,
        several GOPs at once where the file allows (:mod:`videollama3.gop`).

        The reader is closed when the iteration ends, fails or is closed early; a later call reads the
        file again from its start (one iteration at a time).

        Frames are turned upright by their display rotation (:func:`upright`).

        Raises:
            VideoError: (while iterating) for a bad ``fps``, ``start`` or ``end`` (:func:`check_sampling`);
                when the video yields no frame (none at all, or none in the window asked for), breaks off
                while decoding, or ends before the duration its container gives (a truncated file;
                ``stopped_at`` gives the last time decoded, after the frames up to it were yielded);
                when another iteration of this reader is still reading, or the file cannot be opened again.
        """
        return VideoFrames(self, fps, start, end)

    def _sampling(self, fps: float | None, start: float, end: float | None
                  ) -> tuple[float, float | None, _UnsampledFrames | None]:
        """Checks ``fps``, ``start`` and ``end`` (:func:`check_sampling`, closing the reader when one is bad);
        the stream's time base, the time of its first frame when the container gives it, and the packets
        to leave undecoded (None: decode all)."""
        try:
            check_sampling(fps, start, end, self.path)
        except VideoError:
            self.close()
            raise
        container = self._container
        stream = video_stream(container)
        time_base = float(stream.time_base) if stream.time_base else 0.0
        t0 = float(stream.start_time * time_base) if stream.start_time is not None else None
        unneeded = _UnsampledFrames(fps, start) if fps is not None and time_base and t0 is not None \
            and _INDEXED_FORMATS & set(container.format.name.split(",")) else None
        return time_base, t0, unneeded

    def _in_turn(self, fps: float | None, start: float, end: float | None) -> Iterator[tuple[np.ndarray, float]]:
        """:meth:`frames`, decoded by one decoder (FFmpeg's frame threads) as they are asked for."""
        time_base, t0, unneeded = self._sampling(fps, start, end)
        path, container = self.path, self._container
        stream = video_stream(container)
        sampler = FrameSampler(fps, start)
        stream.thread_type = "AUTO"
        stream.thread_count = decoder_threads(skipping=unneeded is not None)
        last_time = None
        yielded = 0
        stopped_by_end = False
        try:
            try:
                for frame in _decode(container, stream, unneeded, time_base):
                    if frame.pts is None:
                        continue
                    if t0 is None:  # streams may not start at pts 0
                        t0 = frame.pts * time_base
                    t = frame.pts * time_base - t0
                    if end is not None and t > end:
                        stopped_by_end = True
                        break
                    last_time = t
                    if not sampler.take(t):
                        continue
                    yield frame_image(frame), round(t, 6)
                    yielded += 1
            except (av.error.FFmpegError, UnicodeDecodeError) as e:
                raise decoding_stopped(path, last_time, e) from None
        finally:
            self.close()
        self._check_complete(yielded, start, end, stopped_by_end, last_time)

    def _sampled(self, events: Iterator, fps: float, start: float, end: float | None
                 ) -> Iterator[tuple[np.ndarray, float]]:
        """:meth:`frames` from what :func:`videollama3.gop.decode_gops` gives: the sampler run over the frames
        it may take, in order; the same checks at the end as :meth:`_in_turn`."""
        sampler = FrameSampler(fps, start)
        last_time = None
        yielded = 0
        stopped_by_end = False
        try:
            for event in events:
                if isinstance(event, DecodedFrame):
                    last_time = event.time
                    if sampler.take(event.time):
                        yield event.image, round(event.time, 6)
                        yielded += 1
                elif isinstance(event, GopEnd):
                    last_time = event.last_time if event.last_time is not None else last_time
                elif isinstance(event, PastEnd):
                    stopped_by_end = True
                else:  # Failed
                    if event.last_time is not None:
                        last_time = event.last_time
                    if not isinstance(event.error, (av.error.FFmpegError, UnicodeDecodeError)):
                        raise event.error
                    raise decoding_stopped(self.path, last_time, event.error) from None
        finally:
            events.close()
            self.close()
        self._check_complete(yielded, start, end, stopped_by_end, last_time)

    def _check_complete(self, yielded: int, start: float, end: float | None, stopped_by_end: bool,
                        last_time: float | None) -> None:
        """After the last frame: raise :class:`VideoError` when none was decoded, when decoding ended
        before the duration the container gives (a truncated file whose index is at the front decodes
        as a shorter video), or when no frame lay in the window asked for (``start`` after the last
        frame, or no frame from ``start`` to ``end``): a stream of nothing is never a silent success."""
        if yielded == 0 and last_time is None and not stopped_by_end:
            raise VideoError(f"{self.path} contains no decodable video frame", self.path, stopped_at=None)
        duration = self.info.duration
        slack = max(3.0 / self.info.fps if self.info.fps else 1.0, 0.5)  # the last frame starts one period early
        if not stopped_by_end and duration and last_time is not None and last_time < duration - slack:
            raise VideoError(f"decoding {self.path} ended at {last_time:.2f}s of a {duration:.2f}s video (the file "
                             "is truncated)", self.path, stopped_at=last_time)
        if yielded == 0:
            raise empty_window(self.path, start, end, None if stopped_by_end else last_time)


def empty_window(path: str, start: float, end: float | None, last_time: float | None) -> VideoError:
    """The :class:`VideoError` of a sampling window that holds no frame: ``start`` after the last frame (at
    ``last_time`` seconds), or, with ``last_time`` None, no frame from ``start`` to ``end``."""
    if last_time is not None:
        return VideoError(f"no frame of {path} at or after start {start:.6g}s: its last frame is at "
                          f"{last_time:.2f}s", path, stopped_at=None)
    return VideoError(f"no frame of {path} lies between start {start:.6g}s and end {end:.6g}s; widen the window",
                      path, stopped_at=None)


def decoding_stopped(path: str, last_time: float | None, error: BaseException) -> VideoError:
    """The :class:`VideoError` of decoding that broke off after ``last_time`` seconds (None: before any frame)."""
    return VideoError(f"decoding {path} stopped at {last_time or 0.0:.2f}s ({error.__class__.__name__}: {error})",
                      path, stopped_at=last_time)


class VideoFrames(Iterator[tuple[np.ndarray, float]]):
    """The ``(frame, timestamp_s)`` of one :meth:`VideoReader.frames` call: decoded in turn as they are
    iterated, or, when :func:`decode_ahead` takes them before the first, ahead by :meth:`ahead`.

    Closing it (or leaving a ``for`` loop over it early) closes the reader.
    """

    def __init__(self, reader: VideoReader, fps: float | None, start: float, end: float | None) -> None:
        self._reader, self._sampling = reader, (fps, start, end)
        self._frames: Iterator[tuple[np.ndarray, float]] | None = None

    def __next__(self) -> tuple[np.ndarray, float]:
        if self._frames is None:
            self._reader._claim(self)
            self._frames = self._reader._in_turn(*self._sampling)
        return next(self._frames)

    def close(self) -> None:
        """Stop decoding and close the reader, unless another iteration of it is reading (idempotent)."""
        if self._frames is not None:
            self._frames.close()
        if self._reader._reader_of in (None, self):
            self._reader.close()

    def ahead(self, depth: int) -> Iterator[tuple[np.ndarray, float]] | None:
        """These frames decoded ahead, several closed GOPs at once (:func:`videollama3.gop.decode_gops`),
        or None when that would not help or cannot be done (iteration already begun; a container without
        an index of presentation times; every frame or every other frame sampled, where the frames held
        ahead bound how far another GOP may run; a codec other than H.264 / HEVC; a single core): then
        :func:`decode_ahead` decodes them in turn in one background thread.

        Raises:
            VideoError: for a bad ``fps``.
        """
        if self._frames is not None or gop_workers() < 2:
            return None
        fps, start, end = self._sampling
        reader = self._reader
        reader._claim(self)
        time_base, t0, unneeded = reader._sampling(fps, start, end)
        if unneeded is None or fps * 2 > reader.info.fps:
            return None
        stream = video_stream(reader._container)
        events = decode_gops(reader._container, stream, fps, start, end, depth, time_base, t0, unneeded,
                             decoder_threads(skipping=True), frame_image)
        if events is None:
            return None
        self._frames = reader._sampled(events, fps, start, end)
        return self._frames


def frame_image(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as a ``(H, W, 3)`` uint8 RGB array, turned upright (:func:`upright`)."""
    return upright(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0))


_INDEXED_FORMATS = {"mp4", "mov", "matroska", "webm"}
"""Containers whose packets carry the presentation time their frames get (from the container's
index), which :class:`_UnsampledFrames` decides on; elsewhere every frame is decoded."""


def decoder_threads(skipping: bool, cores: int | None = None) -> int:
    """FFmpeg threads for decoding a file: 0 (FFmpeg's own choice: one frame thread per core, plus
    one, at most 16) unless frames are skipped undecoded (:class:`_UnsampledFrames`); then
    ``max(8, cores + 1)``, at most 16.

    A skipped frame still passes through one of the decoder's frame threads, so with FFmpeg's count
    fewer frames than there are cores are decoded at once and cores stand idle. Measured on 2 cores,
    trailer_bbb.mp4 (H.264, 720p), best of 3 to 5 runs: at 2 fps 1.87 s with FFmpeg's 3 threads, 1.61 s with 8;
    at 1 fps 1.57 s, 1.25 s with 8 (1.12 s with 16, for 40 MiB more memory than 3); every frame:
    no difference (4.2 s and 4.0 s).

    Args:
        skipping: whether packets may be skipped without decoding.
        cores: cores this process may use (default: its CPU affinity).
    """
    if not skipping:
        return 0
    return min(16, max(8, _cores(cores) + 1))


def _cores(cores: int | None = None) -> int:
    """``cores``, or the cores this process may use (its CPU affinity) when None."""
    if cores is not None:
        return cores
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _UnsampledFrames:
    """Which packets hold a frame that :class:`FrameSampler` will certainly not take, so that a
    non-reference one need not be decoded at all.

    The sampler takes the first frame (in display order) of each sample period
    ``floor((t - start) * fps)``. Packets come in decoding order, but their timestamps are known
    before decoding: a packet whose frame is not the earliest of its period among the packets seen
    so far cannot be taken (the earlier one, shown before it, is taken first, or one earlier still).
    Frames near a period's end, before ``start`` or without a timestamp are never called unneeded,
    and only containers with an index of presentation times are read this way (``_INDEXED_FORMATS``).
    Skipping is left to the decoder (``skip_frame = "NONREF"``, FFmpeg's own test of whether any
    other frame refers to this one), so reference frames are always decoded and every frame
    that is kept is bit-identical: on H.264 with B-frames at 1 fps about a quarter of the decoding
    time goes (trailer_bbb.mp4: 2.4 s -> 1.8 s).
    """

    def __init__(self, fps: float, start: float) -> None:
        self.fps, self.start = fps, start
        self.earliest: dict[int, float] = {}  # sample period -> earliest frame time seen in it

    def __call__(self, t: float) -> bool:
        """Whether the frame at ``t`` seconds (a packet's time) is certainly not sampled; records ``t``."""
        x = (t - self.start) * self.fps + 1e-6
        period = math.floor(x)
        earliest = self.earliest.get(period)
        if earliest is None or t < earliest:
            self.earliest[period] = t
            if len(self.earliest) > 64:  # packets are at most a few frames out of display order
                del self.earliest[min(self.earliest)]
        return earliest is not None and earliest < t and t >= self.start and x < period + 1 - 1e-3


def _decode(container: av.container.InputContainer, stream, unneeded: _UnsampledFrames | None,
            time_base: float) -> Iterator[av.VideoFrame]:
    """The frames of ``stream`` in display order, decoding packet by packet; a non-reference frame
    that ``unneeded`` rules out is not decoded (see :class:`_UnsampledFrames`)."""
    t0 = float(stream.start_time * time_base) if unneeded is not None else 0.0
    for packet in container.demux(stream):
        if unneeded is not None:
            skip = packet.pts is not None and unneeded(packet.pts * time_base - t0)
            stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
        yield from packet.decode()


class _Raised:
    """An exception of the decoding thread, carried to the consumer in stream order."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def decode_ahead(frames: Iterator[tuple[np.ndarray, float]], depth: int = 8) -> Iterator[tuple[np.ndarray, float]]:
    """Decode in a background thread, ``depth`` frames ahead of the consumer (PyAV releases the GIL
    while it decodes, so decoding overlaps preprocessing and encoding). The frames of
    :meth:`VideoReader.frames` are decoded by :meth:`VideoFrames.ahead` instead where it can: several
    closed GOPs at once, in threads of their own (:mod:`videollama3.gop`), the same frames.

    The queue is bounded: the thread never holds more than ``depth`` decoded frames. Frames come out
    in order; an error of the source (a :class:`VideoError` part way) comes out after the frames
    before it, exactly where the source raised it. Closing the returned iterator (or leaving it early)
    stops the thread and closes the source.

    Args:
        frames: ``(frame, timestamp_s)`` iterator, e.g. :meth:`VideoReader.frames`.
        depth: frames decoded ahead (>= 1).

    Raises:
        ValueError: for ``depth < 1``; whatever ``frames`` raises, in order.
    """
    import queue
    import threading

    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    by_gops = frames.ahead(depth) if isinstance(frames, VideoFrames) else None
    if by_gops is not None:
        yield from by_gops
        return
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def decode() -> None:
        try:
            for item in frames:
                if not put(item):
                    break
            else:
                put(_END)
        except BaseException as e:  # noqa: BLE001  (carried to the consumer, raised there)
            put(_Raised(e))
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=decode, name="vl3mem-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


def encoder_threads(device: str | None, decode_ahead: int, cores: int | None = None) -> int | None:
    """Torch intra-op threads for encoding while frames are decoded ahead: one core left to the decoder.

    On the CPU, a decoding thread beside torch's own threads (one per core by default) oversubscribes
    the cores: both slow down, and OpenMP threads spinning between operations take the decoder's time
    (measured by ``vl3mem bench pipeline``: on 2 cores, trailer_bbb.mp4 pipelined at 17.4 frames/s with
    2 torch threads, 22.3 with 1). So with ``decode_ahead > 0`` on a CPU device this is
    ``cores - 1`` (at least 1); otherwise None: keep torch's default.

    Args:
        device: the torch device frames are encoded on (``"cpu"``, ``"cuda:0"``...); None means the CPU.
        decode_ahead: frames decoded ahead (0: in turn with encoding).
        cores: cores this process may use (default: its CPU affinity).
    """
    if decode_ahead <= 0 or (device is not None and not str(device).startswith("cpu")):
        return None
    return max(1, _cores(cores) - 1)


def upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """``image`` turned the way its display matrix says (a phone video's ``rotation``, as PyAV reports it:
    degrees counter-clockwise), so the model sees it upright. FFmpeg's players apply the same turn.

    Args:
        image: ``(H, W, 3)`` frame.
        rotation: degrees, a multiple of 90 (others are rounded to one).
    """
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def _natural_key(name: str) -> tuple:
    """``frame10.jpg`` after ``frame9.jpg``: runs of digits compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


class FrameFolder:
    """A folder of numbered images read as a video: frame ``i`` (in natural name order: ``2.jpg``
    before ``10.jpg``) is at ``i / frame_rate`` seconds. Benchmarks ship videos this way (OVBench's
    AVA and TAO frames), as do frame extractors (``ffmpeg -i v.mp4 frames/%05d.jpg``).

    Same interface as :class:`VideoReader`: :attr:`info` without decoding, :meth:`frames` to decode.

    Args:
        path: the folder.
        frame_rate: frames per second the images were taken at (> 0).

    Raises:
        VideoError: for a folder without images, or a frame rate that is not a positive number.
    """

    def __init__(self, path: str | Path, frame_rate: float) -> None:
        self.path = str(path)
        if isinstance(frame_rate, bool) or not isinstance(frame_rate, (int, float)) or not 0 < frame_rate < math.inf:
            raise VideoError(f"the frame rate of frame folder {path} must be a positive number of frames per "
                             f"second, got {frame_rate!r}", self.path)
        self.frame_rate = float(frame_rate)
        try:
            names = [f.name for f in Path(path).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()]
        except OSError as e:
            raise VideoError(f"cannot list frame folder {path} ({e.strerror})", self.path) from None
        if not names:
            raise VideoError(f"frame folder {path} holds no image ({', '.join(IMAGE_EXTENSIONS)})", self.path)
        self.files = [Path(path) / name for name in sorted(names, key=_natural_key)]
        width, height = self._size(self.files[0])
        self.info = VideoInfo(self.path, len(self.files) / self.frame_rate, self.frame_rate, width, height,
                              len(self.files))

    def _size(self, file: Path) -> tuple[int, int]:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(file) as image:
                return image.size
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            raise VideoError(f"cannot read frame {file} ({e.__class__.__name__})", self.path) from None

    def __enter__(self) -> FrameFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Nothing is held open between frames (idempotent)."""

    def frames(self, fps: float | None = 1.0, start: float = 0.0, end: float | None = None
               ) -> Iterator[tuple[np.ndarray, float]]:
        """Yield ``(frame (H, W, 3) uint8 RGB, timestamp_s)`` sampled at ``fps`` as
        :meth:`VideoReader.frames` samples, reading one image at a time.

        Raises:
            VideoError: for a bad ``fps``, ``start`` or ``end`` (:func:`check_sampling`), a window that
                holds no frame, an image that cannot be read, or one whose size differs from the first
                frame's (``stopped_at`` gives the last time read, after the frames up to it were yielded).
        """
        from PIL import Image, UnidentifiedImageError

        check_sampling(fps, start, end, self.path)
        size, last, sampler = (self.info.width, self.info.height), None, FrameSampler(fps, start)
        for i, file in enumerate(self.files):
            t = i / self.frame_rate
            if end is not None and t > end:
                break
            if not sampler.take(t):
                continue
            try:
                with Image.open(file) as image:
                    if image.size != size:
                        raise VideoError(f"frame {file} is {image.size[0]}x{image.size[1]} but the folder's first "
                                         f"frame is {size[0]}x{size[1]}; a video's frames share one size",
                                         self.path, stopped_at=last)
                    frame = np.array(image.convert("RGB"))  # a writable copy, as decoded video frames are
            except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
                raise VideoError(f"reading {self.path} stopped at {last or 0.0:.2f}s: cannot read frame {file.name} "
                                 f"({e.__class__.__name__})", self.path, stopped_at=last) from None
            last = round(t, 6)
            yield frame, last
        if last is None:  # nothing in the window: it starts after the last frame, or lies between two frames
            final = (len(self.files) - 1) / self.frame_rate
            raise empty_window(self.path, start, end, final if start > final else None)


def open_video(path: str | Path, frame_rate: float | None = None) -> VideoReader | FrameFolder:
    """Open a video once: ``reader.info`` without decoding, ``reader.frames(fps)`` to decode.

    Args:
        path: a video file, or a folder of numbered images (:class:`FrameFolder`).
        frame_rate: frames per second of a frame folder's images (required for a folder; a video
            file's own rate comes from its container and this is ignored).

    Raises:
        VideoError: when the file is missing, empty, not a video or has no video stream; for a
            folder given no frame rate or holding no image.
    """
    if Path(path).is_dir():
        if frame_rate is None:
            raise VideoError(f"{path} is a frame folder; give the frame rate its images were taken at "
                             "(--frame-rate, or the annotation's fps)", str(path))
        return FrameFolder(path, frame_rate)
    return VideoReader(path)


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's duration, frame rate and size without decoding it.

    Raises:
        VideoError: when the file is missing, empty, not a video or has no video stream.
    """
    with open_video(path) as video:
        return video.info


def iter_frames(
    path: str | Path, fps: float | None = 1.0, start: float = 0.0, end: float | None = None
) -> Iterator[tuple[np.ndarray, float]]:
    """Yield ``(frame, timestamp_s)`` sampled at ``fps``, decoding lazily.

    The k-th sample is the first decoded frame whose presentation time is at or
    after ``start + k / fps`` (all frames when ``fps`` is None), so only one frame
    is held at a time and a 10-minute video never sits in memory.

    Args:
        path: video file.
        fps: target frames per second (> 0), or None for every frame.
        start: first time to sample, seconds.
        end: stop after this time, seconds (None: to the end).

    Yields:
        ``frame``: ``(H, W, 3)`` uint8 RGB numpy array; ``timestamp_s``: its
        presentation time in seconds from the start of the stream.

    Raises:
        VideoError: for a bad ``fps``, ``start`` or ``end`` (:func:`check_sampling`); when the video
            cannot be opened, yields no frame (none at all, or none from ``start`` to ``end``), or
            breaks off while decoding (``stopped_at`` gives the last time decoded).
    """
    check_sampling(fps, start, end, str(path))
    yield from open_video(path).frames(fps, start, end)
