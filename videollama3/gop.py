"""Decoding a video file ahead of its consumer, several closed GOPs at once (:func:`decode_gops`).

Sampled sparsely (1 fps of a 24 fps H.264 video), most frames are skipped undecoded
(:class:`~videollama3.video._UnsampledFrames`) and FFmpeg's frame threads wait on each other: on 2
cores trailer_bbb.mp4 decodes with about 1.7 cores busy, and a pipeline over it is bound by that.
A *closed* GOP, one that starts at an IDR picture (H.264 / HEVC: the decoder forgets every frame
before it), decodes with nothing from before it, as after a seek. So the packets are cut into closed
GOPs as they are demuxed, and single-threaded decoders, one per core, decode several GOPs at once.
The frames come out in display order and bit-identical to one decoder's (a test compares them).

A GOP longer than :data:`LOOKAHEAD_PACKETS` packets or :data:`LOOKAHEAD_BYTES` bytes (an open-GOP
encode whose keyframes are not IDR pictures, say) is not held: it is streamed to one decoder with
FFmpeg's frame threads, as :meth:`~videollama3.video.VideoReader.frames` decodes in turn.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import av
import numpy as np

from .sampling import GopCandidates

LOOKAHEAD_PACKETS = 600
"""Packets held while looking for the next IDR picture: 25 s at 24 fps, 10 s at 60 fps (x264 places
one at least every 250 frames by default)."""

LOOKAHEAD_BYTES = 32 << 20
"""Bytes of packets held while looking for the next IDR picture, per GOP."""

GOP_FRAMES_PER_DEPTH = 1
"""Frames each GOP in flight may hold decoded, per frame of ``depth`` the consumer asked for (see
:func:`decode_gops`)."""

MAX_WORKERS = 8
"""Decoders at most, whatever the cores: each holds frames ahead (see :func:`decode_gops`). On a
16-core H200 machine, trailer_bbb.mp4 at 1 fps decoding only (5 rounds interleaved, medians): 4
decoders 57.5 frames/s with 3.0 cores busy, 8 decoders 76.3 with 3.8, 12 decoders 68.0 with 3.6."""


def gop_workers(cores: int | None = None) -> int:
    """Decoders for :func:`decode_gops`: one per core this process may use, at most :data:`MAX_WORKERS`."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_WORKERS))


class _Syntax(NamedTuple):
    """Which NAL unit types of a codec start a closed GOP and which are parameter sets."""

    idr: frozenset[int]
    parameter_sets: frozenset[int]
    hevc: bool

    def nal_type(self, header: int) -> int:
        """The type of a NAL unit from its first byte (H.264: 5 bits; HEVC: 6 bits after the forbidden bit)."""
        return (header >> 1) & 0x3F if self.hevc else header & 0x1F


_SYNTAX = {
    # H.264 (ITU-T H.264 table 7-1): 5 IDR slice; 7 SPS, 8 PPS
    "h264": _Syntax(frozenset({5}), frozenset({7, 8}), hevc=False),
    # HEVC (ITU-T H.265 table 7-1): 19 IDR_W_RADL, 20 IDR_N_LP (CRA, 21, may open a GOP); 32 VPS, 33 SPS, 34 PPS
    "hevc": _Syntax(frozenset({19, 20}), frozenset({32, 33, 34}), hevc=True),
}


def nal_length_size(codec: str, extradata: bytes | None) -> int | None:
    """Bytes of the length before each NAL unit of a packet, from the codec's configuration record
    (ISO/IEC 14496-15: ``avcC`` byte 4, ``hvcC`` byte 21, low 2 bits, plus one); None for an Annex B
    stream (start codes, no configuration record)."""
    if not extradata or extradata[0] != 1:
        return None
    at = 21 if codec == "hevc" else 4
    return (extradata[at] & 3) + 1 if len(extradata) > at else None


def nal_headers(data: bytes | memoryview, length_size: int | None) -> list[int]:
    """The first byte of each NAL unit in ``data``: length-prefixed (``length_size`` bytes, big endian; a
    packet's memoryview, read without a copy), or Annex B (``00 00 01`` start codes; bytes) when
    ``length_size`` is None. A length running past the end stops the scan."""
    headers = []
    if length_size is None:
        at = data.find(b"\x00\x00\x01")
        while at >= 0 and at + 3 < len(data):
            headers.append(data[at + 3])
            at = data.find(b"\x00\x00\x01", at + 3)
        return headers
    at = 0
    while at + length_size < len(data):
        size = int.from_bytes(data[at: at + length_size], "big")
        if size == 0 or at + length_size + size > len(data):
            break
        headers.append(data[at + length_size])
        at += length_size + size
    return headers


class ClosedGops:
    """Which packets start a closed GOP: a keyframe holding an IDR picture that needs no parameter set
    sent before it (once the stream has sent one in its packets, the IDR packet must carry every kind
    again; those in the configuration record are given to every decoder).

    Args:
        codec: FFmpeg's codec name (``"h264"``, ``"hevc"``); others have no closed GOPs here.
        extradata: the stream's configuration record (``avcC`` / ``hvcC``), or None.
    """

    def __init__(self, codec: str, extradata: bytes | None) -> None:
        self.syntax = _SYNTAX.get(codec)
        self.length_size = nal_length_size(codec, extradata)
        self.sets_in_band = False

    def __call__(self, packet: av.Packet) -> bool:
        """Whether ``packet`` (in decoding order; every packet is shown once) starts a closed GOP."""
        syntax = self.syntax
        if syntax is None:
            return False
        data = memoryview(packet) if self.length_size else bytes(packet)  # Annex B is searched for start codes
        types = {syntax.nal_type(h) for h in nal_headers(data, self.length_size)}
        starts = packet.is_keyframe and bool(types & syntax.idr) and \
            (not self.sets_in_band or syntax.parameter_sets <= types)
        self.sets_in_band = self.sets_in_band or bool(types & syntax.parameter_sets)
        return starts


class DecodedFrame(NamedTuple):
    """A frame the sampler may take: ``image`` as ``to_image`` made it (``(H, W, 3)`` uint8 RGB); ``time``
    in seconds from the stream's first frame."""

    image: np.ndarray
    time: float


class GopEnd(NamedTuple):
    """A GOP decoded to its end; the time of its last frame in seconds (None: it had none)."""

    last_time: float | None


class PastEnd(NamedTuple):
    """A frame after the stream's ``end``: the frames before it were the last."""


class Failed(NamedTuple):
    """Demuxing or decoding failed: the error, and the time of the GOP's last frame before it (None: none)."""

    error: BaseException
    last_time: float | None


class _Stop(Exception):
    """The consumer left: a thread stops where it is."""


@dataclass
class _Gop:
    """One GOP: its packets ``(packet, skip)`` in decoding order (then None, or :class:`Failed` when
    demuxing broke off), the decoder threads for it, and the events its decoder hands on."""

    packets: queue.Queue
    threads: int
    out: queue.Queue


_END = object()

_LAST_GOP = object()
"""After the packets of the stream's last GOP, in place of None: it is decoded to its end (the end checks read it)."""


def decode_gops(container: Any, stream: Any, fps: float, start: float, end: float | None, depth: int,
               time_base: float, t0: float, unneeded: Callable[[float], bool] | None, long_gop_threads: int,
               to_image: Callable[[av.VideoFrame], np.ndarray]
               ) -> Iterator[DecodedFrame | GopEnd | PastEnd | Failed] | None:
    """Decode ``stream`` in background threads, several closed GOPs at once; what it gives, in display
    order: every frame a :class:`~videollama3.sampling.FrameSampler` (``fps``, ``start``) may take
    (:class:`~videollama3.sampling.GopCandidates`: run the sampler over them in order), a :class:`GopEnd`
    after each GOP, then :class:`PastEnd` at the first frame after ``end`` or :class:`Failed` where
    demuxing or decoding broke off. None when the codec has no closed GOPs here (not H.264 / HEVC).

    One thread demuxes, asks ``unneeded`` about each packet in decoding order (as
    :meth:`~videollama3.video.VideoReader.frames` does: those it rules out are not decoded) and cuts the
    packets into GOPs where :class:`ClosedGops` says; :func:`gop_workers` threads each decode a GOP with
    a decoder of their own, single-threaded (``long_gop_threads`` of FFmpeg's frame threads for a GOP
    past the lookahead, streamed), and make the frames images there (``to_image``); a GOP held whole,
    other than the last, only as far as the last frame the sampler may take in it (:class:`_Trim`).
    Memory is bounded: at most ``workers + 1`` GOPs in flight, each holding at most
    ``GOP_FRAMES_PER_DEPTH * depth`` frames (8 at the default depth) and its packets
    (:data:`LOOKAHEAD_PACKETS`, :data:`LOOKAHEAD_BYTES`): at 720p (2.7 MB an RGB frame) at most 65 MB
    on 2 cores and 195 MB on 8 or more (4K: 0.6 GB and 1.8 GB). A GOP must get ahead to keep its core
    busy (10 sampled frames for one of 250 frames at 1 fps): on trailer_bbb.mp4 at 1 fps, decoding
    only, 7 rounds interleaved, ``depth`` frames a GOP and ``2 * depth`` both gave 62 frames/s with 1.7
    of 2 cores busy, ``depth / 2`` 53 frames/s with 1.5.

    Closing the iterator (or leaving it early) stops the threads; the container stays open (its owner
    closes it).

    Args:
        container, stream: PyAV's input container and its video stream, not yet demuxed.
        fps, start, end: the sampling (``fps`` samples per second from ``start`` seconds) and the last time
            to decode (None: to the end).
        depth: frames the consumer asked to have decoded ahead (>= 1).
        time_base, t0: the stream's time base, and its first frame's time, both in seconds.
        unneeded: a packet's time in seconds -> whether its frame will not be sampled (None: decode all).
        long_gop_threads: FFmpeg frame threads for a GOP longer than the lookahead.
        to_image: a decoded frame -> its image (e.g. upright RGB).
    """
    codec = stream.codec_context
    if codec.name not in _SYNTAX:
        return None
    return _run(container, stream, codec.name, codec.extradata, fps, start, end, depth, time_base, t0, unneeded,
                long_gop_threads, to_image)


def _run(container: Any, stream: Any, codec: str, extradata: bytes | None, fps: float, start: float,
         end: float | None, depth: int, time_base: float, t0: float, unneeded: Callable[[float], bool] | None,
         long_gop_threads: int, to_image: Callable[[av.VideoFrame], np.ndarray]
         ) -> Iterator[DecodedFrame | GopEnd | PastEnd | Failed]:
    workers = gop_workers()
    frames_held = max(1, round(GOP_FRAMES_PER_DEPTH * depth))
    stop = threading.Event()
    order: queue.Queue = queue.Queue(maxsize=workers)  # GOPs in stream order, as the consumer takes them
    todo: queue.Queue = queue.Queue()  # the same GOPs, for the decoders
    cut = ClosedGops(codec, extradata)

    def put(q: queue.Queue, item: Any) -> None:
        while True:
            if stop.is_set():
                raise _Stop
            try:
                q.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def get(q: queue.Queue) -> Any:
        while True:
            if stop.is_set():
                raise _Stop
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                continue

    def begin(threads: int) -> _Gop:
        gop = _Gop(queue.Queue(maxsize=LOOKAHEAD_PACKETS + 1), threads, queue.Queue(maxsize=frames_held))
        put(order, gop)
        todo.put(gop)
        return gop

    def demux() -> None:
        held: list[tuple[av.Packet, bool]] = []
        size = 0
        streaming: _Gop | None = None  # a GOP past the lookahead, fed as it is demuxed

        def hand_over(gop: _Gop) -> None:
            nonlocal held, size
            for item in held:
                put(gop.packets, item)
            held, size = [], 0

        def finish(last: Failed | None = None, final: bool = False) -> None:
            nonlocal streaming
            gop = streaming or (begin(1) if held or last is not None else None)
            if gop is not None:
                hand_over(gop)
                put(gop.packets, last if last is not None else _LAST_GOP if final else None)
            streaming = None

        try:
            try:
                for packet in container.demux(stream):
                    if packet.size == 0 and packet.pts is None:
                        continue  # the flush packet: each GOP's decoder is flushed at its end
                    t = packet.pts * time_base - t0 if packet.pts is not None else None
                    if cut(packet) and (held or streaming):
                        finish()
                        if end is not None and t is not None and t > end:  # shown first in its GOP: all later are too
                            put(order, PastEnd())
                            return
                    item = (packet, t is not None and unneeded is not None and unneeded(t))
                    if streaming is not None:
                        put(streaming.packets, item)
                        continue
                    held.append(item)
                    size += packet.size
                    if len(held) >= LOOKAHEAD_PACKETS or size >= LOOKAHEAD_BYTES:
                        streaming = begin(long_gop_threads)
                        hand_over(streaming)
                finish(final=True)
            except _Stop:
                raise
            except BaseException as e:  # noqa: BLE001  (carried to the consumer, raised there)
                finish(Failed(e, None))
            put(order, _END)
        except _Stop:
            return

    def decode() -> None:
        try:
            while (gop := get(todo)) is not None:
                _decode_gop(gop, codec, extradata, time_base, t0, fps, start, end, to_image, get, put)
        except _Stop:
            return

    threads = [threading.Thread(target=demux, name="vl3mem-demux", daemon=True)]
    threads += [threading.Thread(target=decode, name=f"vl3mem-gop-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    try:
        while (gop := order.get()) is not _END:
            if isinstance(gop, PastEnd):
                yield gop
                return
            while True:
                event = gop.out.get()
                yield event
                if not isinstance(event, DecodedFrame):
                    break
            if not isinstance(event, GopEnd):
                return
    finally:
        stop.set()
        for thread in threads:
            thread.join()


class _Trim:
    """Where a held GOP that is not the stream's last may stop decoding: once the last frame the sampler
    may take (:class:`~videollama3.sampling.GopCandidates` over its packets' times) is shown, and with it
    every frame shown before it whose packet is not ruled out (``skip``: never sampled). The frames after
    it cannot be taken, and the packets after it in decoding order are left: on trailer_bbb.mp4 at
    1 fps that is 1 decoded frame in 12. Any surprise (a frame at a time no packet has, a packet
    that does not give its frame) keeps the GOP decoding to its end, as before.

    Attributes:
        last: the time of the last frame the sampler may take (None: none).
        waiting: the times of the frames not yet shown up to ``last``, those ruled out left aside.
        end_time: the time of the GOP's last frame, from its packets.

    Args:
        times: the packets' times in seconds, in decoding order, each distinct (at least one).
        skip: for each packet, whether its frame is ruled out (:meth:`~videollama3.video.VideoReader.frames`'s
            test).
        fps, start: the sampling.
    """

    def __init__(self, times: list[float], skip: list[bool], fps: float, start: float) -> None:
        kept = sorted(t for t, ruled_out in zip(times, skip) if not ruled_out)
        candidates = GopCandidates(fps, start)
        taken = [t for t in kept if candidates(t)]  # every kept time goes through, in display order
        self.last = taken[-1] if taken else None
        self.waiting = {t for t in kept if self.last is not None and t <= self.last}
        self.times = set(times)
        self.end_time = max(times)
        self.surprised = False

    @classmethod
    def of(cls, packets: list[tuple[av.Packet, bool]], time_base: float, t0: float, fps: float, start: float
           ) -> _Trim | None:
        """The trim of a GOP's ``(packet, skip)`` pairs; None when there are none, a packet has no time or two
        share one."""
        times = [packet.pts * time_base - t0 if packet.pts is not None else None for packet, _ in packets]
        if not times or None in times or len(set(times)) != len(times):
            return None
        return cls(times, [skip for _, skip in packets], fps, start)

    def shown(self, t: float) -> None:
        """The decoder gave the frame at ``t`` seconds."""
        self.waiting.discard(t)
        self.surprised = self.surprised or t not in self.times

    def done(self) -> bool:
        """Whether every frame the sampler may take, and every frame before it, has been shown."""
        return not self.waiting and not self.surprised


def _decode_gop(gop: _Gop, codec: str, extradata: bytes | None, time_base: float, t0: float, fps: float,
                start: float, end: float | None, to_image: Callable[[av.VideoFrame], np.ndarray],
                get: Callable[[queue.Queue], Any], put: Callable[[queue.Queue, Any], None]) -> None:
    """Decode one GOP with a decoder of its own into ``gop.out``: the frames the sampler may take
    (:class:`~videollama3.sampling.GopCandidates`), then :class:`GopEnd` (or :class:`PastEnd` at the first
    frame after ``end``, or :class:`Failed`). A held GOP other than the stream's last is decoded only as
    far as its last such frame (:class:`_Trim`)."""
    candidates = GopCandidates(fps, start)
    last_time: float | None = None
    trim: _Trim | None = None

    def hand_on(frames: Iterator[av.VideoFrame]) -> bool:
        nonlocal last_time
        for frame in frames:
            if frame.pts is None:
                continue
            t = frame.pts * time_base - t0
            if end is not None and t > end:
                put(gop.out, PastEnd())
                return False
            if candidates(t):
                put(gop.out, DecodedFrame(to_image(frame), t))
            last_time = t
            if trim is not None:
                trim.shown(t)
        return True

    try:
        decoder = av.CodecContext.create(codec, "r")
        if extradata:
            decoder.extradata = extradata
        if gop.threads != 1:
            decoder.thread_type = "AUTO"
        decoder.thread_count = gop.threads
        if gop.threads == 1:  # held: every packet is in hand already
            held = []
            while (item := get(gop.packets)) is not None and item is not _LAST_GOP and not isinstance(item, Failed):
                held.append(item)
            trim = _Trim.of(held, time_base, t0, fps, start) if item is None else None
            items: Iterator[Any] = iter([*held, item])
        else:
            items = iter(lambda: get(gop.packets), _END)  # streamed; the loop ends at the GOP's last item
        for item in items:
            if trim is not None and trim.done():  # every frame shown had a packet's time: none is later
                put(gop.out, GopEnd(trim.end_time))
                return
            if item is None or item is _LAST_GOP:
                break
            if isinstance(item, Failed):  # demuxing broke off after these packets
                put(gop.out, Failed(item.error, last_time))
                return
            packet, skip = item
            decoder.skip_frame = "NONREF" if skip else "DEFAULT"
            try:
                frames = decoder.decode(packet)
            except av.error.InvalidDataError:  # a damaged packet: FFmpeg's frame threads, decoding in turn, drop
                continue                       # it and go on (a truncated file's last one), and so does this
            if not hand_on(frames):
                return
        decoder.skip_frame = "DEFAULT"
        if hand_on(decoder.decode(None)):
            put(gop.out, GopEnd(last_time))
    except _Stop:
        raise
    except BaseException as e:  # noqa: BLE001  (carried to the consumer, raised there)
        put(gop.out, Failed(e, last_time))
