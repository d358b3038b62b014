"""Training samples built by streaming each video through the memory, exactly as at inference.

For a conversation, the video is decoded lazily at its fps and every frame is pushed
into a :class:`~videollama3.session.StreamingSession` (encoded once by the frozen vision
encoder, added to the memory backend). At each turn's time ``t`` (after every frame
``<= t`` and before any later one, as :func:`~videollama3.session.run_stream` does) the
sample is the memory readout (:meth:`StreamingSession.question_readout`) + the dialogue so
far + the question, with the loss on the answer tokens only.

Data order: conversations are shuffled per epoch from ``seed + epoch``; each process
takes ``order[rank::world_size]``; turns follow in time order. A position in this order
is one integer (samples consumed), so a resumed run picks up at the same sample, and
rebuilds the memory of a conversation it stopped in by streaming that video again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from videollama3.errors import AnnotationError, QuestionError, VideoError
from videollama3.modeling import memory_tokens
from videollama3.processing import IGNORE_INDEX
from videollama3.session import StreamingSession, pipelined, question_schedule
from videollama3.video import iter_frames


@dataclass
class TrainingSample:
    """One turn, ready for the model.

    Attributes:
        id: the turn's id; time: its time in seconds.
        input_ids: ``(L,)`` long: prompt (with ``n`` ``<|video_pad|>`` ids) + answer.
        labels: ``(L,)`` long: the answer's ids (and the chat template's end of turn),
            :data:`IGNORE_INDEX` elsewhere.
        visual_tokens: ``(n, C_mem)`` memory tokens (a new tensor, on the model's device).
        tier_ids: ``(n,)`` long.
        frames_seen: frames pushed before the turn; last_frame_time: the latest one's
            time in seconds (``<= time``).
        entry_times: ``(start, end)`` seconds of every memory entry in the readout.
    """

    id: str
    time: float
    input_ids: torch.Tensor
    labels: torch.Tensor
    visual_tokens: torch.Tensor
    tier_ids: torch.Tensor
    frames_seen: int
    last_frame_time: float
    entry_times: list[tuple[float, float]]


class StreamingSampler:
    """Streams conversations through a session and yields their training samples.

    Args:
        session: a streaming session on the model being trained (its frozen vision encoder
            encodes the frames; its memory is cleared at every conversation; its processor
            writes the prompts and labels).
        dataset: the training ``datasets.Dataset`` of turns (see :mod:`train.data`); a
            conversation's rows are read from it only when it is streamed.
        dialogue, max_length, decode_ahead: from :class:`~train.config.DataConfig`.
        skip_bad: a video that breaks off while decoding is reported and its remaining
            turns left out (else :class:`AnnotationError`).
    """

    def __init__(self, session: StreamingSession, dataset, dialogue: bool = True, max_length: int = 4096,
                 skip_bad: bool = False, decode_ahead: int = 8) -> None:
        self.session = session
        self.dialogue, self.max_length, self.skip_bad, self.decode_ahead = dialogue, max_length, skip_bad, decode_ahead
        self.dataset = dataset
        record = dataset["record"]
        starts = [i for i in range(len(record)) if i == 0 or record[i] != record[i - 1]]
        self.spans: list[tuple[int, int]] = list(zip(starts, [*starts[1:], len(record)]))  # rows of each conversation
        self.warnings: list[str] = []

    def __len__(self) -> int:
        """Conversations."""
        return len(self.spans)

    def turns(self, index: int) -> list[dict]:
        """The rows of conversation ``index``, in time order."""
        start, end = self.spans[index]
        columns = self.dataset[start:end]
        return [dict(zip(columns, values)) for values in zip(*columns.values())]

    def record_samples(self, turns: Sequence[dict], skip: int = 0) -> Iterator[TrainingSample]:
        """Samples of one conversation, leaving out its first ``skip`` turns (their frames
        are still pushed: the memory at a turn depends on every frame before it)."""
        session = self.session
        session.reset()
        video = turns[0]["video"]
        # decode no further than the last turn: later frames cannot reach any sample
        frames = pipelined(session, iter_frames(video, fps=turns[0]["fps"], end=turns[-1]["time"]), self.decode_ahead)
        history: list[tuple[str, str]] = []
        try:
            for k in question_schedule(session, frames, [turn["time"] for turn in turns]):
                turn = turns[k]
                if k >= skip:
                    yield self._sample(turn, history)
                else:  # asking changes some memories (fifo marks, lru counts uses): replay it
                    session.question_readout()
                if self.dialogue:
                    history.append((turn["question"], turn["answer"]))
        except VideoError as e:
            message = f"{video}: conversation with turn {turns[0]['id']}: {e}"
            if not self.skip_bad:
                raise AnnotationError(message + " (use --skip-bad to report it and go on)") from None
            self.warnings.append(message)
        finally:
            frames.close()  # release the container now, not at garbage collection

    def _sample(self, turn: dict, history: list[tuple[str, str]]) -> TrainingSample:
        session = self.session
        entries = session.question_readout()
        try:
            input_ids, labels, _ = session.processor.training_example(entries, turn["question"], turn["answer"],
                                                                      history, self.max_length)
        except (ValueError, QuestionError) as e:
            raise AnnotationError(f"turn {turn['id']} of {Path(turn['video']).name}: {e}") from None
        tokens, tier_ids = memory_tokens(entries, session.model.memory_width, device=session.model.device)
        return TrainingSample(
            id=turn["id"], time=turn["time"], input_ids=input_ids, labels=labels, visual_tokens=tokens,
            tier_ids=tier_ids, frames_seen=session.frames_seen, last_frame_time=session.time,
            entry_times=[(e.timestamp, e.end_timestamp) for e in entries],
        )

    def epoch_order(self, epoch: int, seed: int, rank: int = 0, world_size: int = 1) -> list[int]:
        """Conversation indices this process trains on in ``epoch`` (a seeded permutation, sharded)."""
        generator = torch.Generator().manual_seed(seed + epoch)
        return torch.randperm(len(self.spans), generator=generator).tolist()[rank::world_size]

    def samples(self, seed: int, start: int = 0, rank: int = 0, world_size: int = 1) -> Iterator[TrainingSample]:
        """Samples in training order, forever (epoch after epoch), from position ``start``.

        Raises:
            AnnotationError: when this process gets no conversation (more processes than
                conversations).
        """
        if not self.epoch_order(0, seed, rank, world_size):
            raise AnnotationError(f"{len(self.spans)} conversations for {world_size} processes; "
                                  f"process {rank} has none: use fewer processes or more data")
        epoch = 0
        while True:
            for index in self.epoch_order(epoch, seed, rank, world_size):
                first, end = self.spans[index]
                if start >= end - first:  # consumed before the resume point: not even read
                    start -= end - first
                    continue
                yield from self.record_samples(self.turns(index), skip=start)
                start = 0
            epoch += 1


def collate(samples: Sequence[TrainingSample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """A right-padded batch for :meth:`videollama3.modeling.VideoLlama3WithMemory.forward`.

    Returns:
        ``input_ids`` / ``attention_mask`` / ``labels`` ``(B, L_max)`` long, ``visual_tokens``
        ``(sum n_b, C)`` and ``tier_ids`` ``(sum n_b,)`` concatenated in batch order.
    """
    length = max(s.input_ids.numel() for s in samples)
    input_ids = torch.full((len(samples), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(samples), length), dtype=torch.long)
    for b, s in enumerate(samples):
        n = s.input_ids.numel()
        input_ids[b, :n], labels[b, :n], attention_mask[b, :n] = s.input_ids, s.labels, 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "visual_tokens": torch.cat([s.visual_tokens for s in samples]),
            "tier_ids": torch.cat([s.tier_ids for s in samples])}
