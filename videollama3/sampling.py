"""Which frames a stream sampled at a fixed rate takes (:class:`FrameSampler`), and which frames of a
closed GOP it may take when the GOP is decoded apart from the frames before it (:class:`GopCandidates`)."""

from __future__ import annotations

import math


class FrameSampler:
    """Which frames a stream sampled at ``fps`` takes: the k-th sample is the first frame at or after
    ``start + k / fps`` seconds (every frame when ``fps`` is None). A frame covering several sample
    periods is taken once, and the next sample is the one after it.

    Args:
        fps: samples per second, or None for every frame.
        start: time of the first sample, seconds.
    """

    def __init__(self, fps: float | None, start: float = 0.0) -> None:
        self.fps, self.start, self.next_time = fps, start, start

    def take(self, t: float) -> bool:
        """Whether the frame at ``t`` seconds (times increasing from call to call) is a sample."""
        if t + 1e-6 < self.next_time:
            return False
        if self.fps is not None:
            self.next_time = self.sample_time(self.period(t) + 1)
        return True

    def period(self, t: float) -> int:
        """The sample period the frame at ``t`` seconds counts in: ``floor((t - start) * fps)``, give or
        take 1e-6 of a period (``fps`` not None)."""
        return math.floor((t - self.start) * self.fps + 1e-6)

    def sample_time(self, k: int) -> float:
        """The time of the ``k``-th sample in seconds, ``start + k / fps`` (``fps`` not None)."""
        return self.start + k / self.fps


class GopCandidates:
    """Which frames of one closed GOP a :class:`FrameSampler` (``fps``, ``start``) run over the whole
    stream may take, judged from this GOP's frames alone (a decoder of its own decodes it, without the
    frames before it): call it on the GOP's frame times in display order.

    The sampler's state is the time of its next sample, ``sample_time(j)`` for some ``j``. Before the
    GOP's first frame ``f0``, with ``K = period(f0)``, ``j <= K + 1`` (the last frame taken counts in period
    ``K`` at most), and every ``j < K`` makes it take ``f0``. So after ``f0`` it is in one of two states:
    ``sample_time(K + 1)`` (it took ``f0``, or was already past it), or ``sample_time(K)``, where ``f0``,
    not taken, lies within 1e-6 periods before that sample but more than 1e-6 s before it (only possible
    below 1 fps). A sampler is run from each state (they merge once they agree); a frame is a candidate
    when either takes it. Exact: the candidates hold every frame the stream's sampler takes, and past
    ``f0`` only those one of the two states would take, so a 24 fps video sampled at 1 fps lets one frame
    through per sample, plus the first frame of each GOP. The times must be the same floats the stream's
    sampler is given.

    Args:
        fps: samples per second (not None: with every frame sampled, every frame is a candidate).
        start: time of the first sample, seconds.
    """

    def __init__(self, fps: float, start: float = 0.0) -> None:
        self.fps, self.start = fps, start
        self.samplers: list[FrameSampler] = []  # empty until the GOP's first frame

    def __call__(self, t: float) -> bool:
        """Whether the stream's sampler may take the GOP's next frame, at ``t`` seconds."""
        if self.samplers:
            taken = [sampler.take(t) for sampler in self.samplers]  # each sampler sees every frame
            if len(self.samplers) == 2 and self.samplers[0].next_time == self.samplers[1].next_time:
                del self.samplers[1]
            return any(taken)
        sampler = FrameSampler(self.fps, self.start)
        self.samplers.append(sampler)
        if not sampler.take(t):  # before the first sample: nothing was taken before it either
            return False
        waiting = FrameSampler(self.fps, self.start)
        waiting.next_time = sampler.sample_time(sampler.period(t))
        if t + 1e-6 < waiting.next_time:
            self.samplers.append(waiting)
        return True
