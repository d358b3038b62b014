from itertools import islice

import pytest
import torch

from train.config import DataConfig
from train.data import load_training_data
from train.samples import StreamingSampler, collate
from videollama3.loading import build_session
from videollama3.modeling import memory_tokens
from videollama3.processing import IGNORE_INDEX
from videollama3.session import run_stream
from videollama3.video import iter_frames


def make_sampler(tiny, path, videos, memory="hierarchical", **kw):
    session = build_session(*tiny, memory)
    data = load_training_data(DataConfig(path=str(path), video_root=str(videos)))
    return StreamingSampler(session, data.dataset, **kw), session


def inference_readout(session, video, fps, t, earlier=()):
    """The readout a question at ``t`` sees at inference (``run_stream``), from a session fed
    only frames <= t, after the questions at times ``earlier`` were asked."""
    session.reset()
    frames = [(f, ft) for f, ft in iter_frames(video, fps=fps) if ft <= t]
    questions = [("q", q) for q in (*earlier, t)]
    result = run_stream(session, frames, questions, ask=lambda i: session.question_readout())
    return result.answers[len(earlier)], len(frames)


@pytest.mark.parametrize("memory", ["hierarchical", "fifo", "lru_quantized"])
def test_sample_at_t_holds_no_later_frame_and_equals_the_inference_readout(tiny, short_data, videos, memory):
    sampler, _ = make_sampler(tiny, short_data, videos, memory)
    conversation = sampler.turns(0)  # bikes.mp4 at 1 fps: turns at 1.0, 2.5, 4.0
    samples = list(sampler.record_samples(conversation))
    assert [s.time for s in samples] == [1.0, 2.5, 4.0]
    control = build_session(*tiny, memory)
    for k, s in enumerate(samples):
        assert s.last_frame_time <= s.time
        assert all(end <= s.time for _, end in s.entry_times)
        earlier = [x.time for x in samples[:k]]
        entries, n_frames = inference_readout(control, videos / "bikes.mp4", 1, s.time, earlier)
        assert s.frames_seen == n_frames == int(s.time) + 1  # frames at 0, 1, ... <= t
        tokens, tiers = memory_tokens(entries, control.model.memory_width)
        assert torch.equal(s.visual_tokens, tokens) and torch.equal(s.tier_ids, tiers)
    # control: the stream went on past the turns, so a later frame was there to leak
    assert samples[0].frames_seen < samples[-1].frames_seen


def test_memory_is_bounded_in_a_long_conversation(tiny, tmp_path, videos):
    from .conftest import write_jsonl

    path = write_jsonl(tmp_path / "long.jsonl", [{"video": "vtest.avi", "fps": 1, "questions": [
        {"id": "q", "time": 40.0, "question": "Q", "answer": "fine"}]}])
    sampler, _ = make_sampler(tiny, path, videos)
    (s,) = sampler.record_samples(sampler.turns(0))
    # the memory, not the video: vtest.avi at 10x13 tokens a frame, 7x9 in mid, 5x7 in long
    assert s.frames_seen == 41 and s.visual_tokens.shape[0] == 8 * 130 + 4 * 63 + 35


def test_prompt_is_the_inference_prompt_and_loss_is_on_the_answer_only(tiny, short_data, videos):
    sampler, session = make_sampler(tiny, short_data, videos)
    tokenizer = session.processor.tokenizer
    first, second, _ = sampler.record_samples(sampler.turns(0))
    entries, _ = inference_readout(build_session(*tiny), videos / "bikes.mp4", 1, 2.5, [1.0])
    history = [("What moves?", "bikes")]
    question = "Which colour?\nOptions:\n(A) red\n(B) green\nAnswer with the option's letter from the given choices directly."
    prompt = second.input_ids[second.labels == IGNORE_INDEX]
    assert tokenizer.decode(prompt) == session.processor.build_prompt(entries, question, history)
    assert tokenizer.decode(second.input_ids[second.labels != IGNORE_INDEX]) == "B<|im_end|>\n"
    # the labelled tokens are the prompt's continuation, at the end
    n = int((second.labels != IGNORE_INDEX).sum())
    assert torch.equal(second.labels[-n:], second.input_ids[-n:]) and (second.labels[:-n] == IGNORE_INDEX).all()
    assert tokenizer.decode(first.input_ids[first.labels != IGNORE_INDEX]) == "bikes<|im_end|>\n"
    assert int((second.input_ids == session.model.video_token_id).sum()) == second.visual_tokens.shape[0]


def test_without_dialogue_each_question_stands_alone(tiny, short_data, videos):
    sampler, session = make_sampler(tiny, short_data, videos, dialogue=False)
    _, second, _ = sampler.record_samples(sampler.turns(0))
    assert "What moves?" not in session.processor.decode(second.input_ids)


def test_oldest_dialogue_turns_are_dropped_to_fit(tiny):
    processor = build_session(*tiny).processor
    history = [("first question " * 5, "first answer"), ("second question", "second answer")]
    ids, _, kept = processor.training_example([], "Q?", "A.", history, max_length=10_000)
    assert kept == 2
    full = ids.numel()
    ids, _, kept = processor.training_example([], "Q?", "A.", history, max_length=full - 1)
    assert kept == 1 and "first question" not in processor.decode(ids)
    with pytest.raises(ValueError, match="more than max_length=5"):
        processor.training_example([], "Q?", "A.", history, max_length=5)


@pytest.mark.parametrize("memory", ["hierarchical", "fifo", "lru_quantized"])
@pytest.mark.parametrize("start", [1, 2, 3, 6])
def test_resuming_at_a_position_gives_the_same_samples(tiny, short_data, videos, memory, start):
    sampler, _ = make_sampler(tiny, short_data, videos, memory)
    full = list(islice(sampler.samples(seed=3), 8))  # 5 turns per epoch: crosses into epoch 2
    resumed = list(islice(sampler.samples(seed=3, start=start), 8 - start))
    assert [s.id for s in resumed] == [s.id for s in full[start:]]
    for a, b in zip(resumed, full[start:]):
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.visual_tokens, b.visual_tokens) and torch.equal(a.tier_ids, b.tier_ids)


def test_epoch_order_is_seeded_and_shards_are_disjoint(tiny, videos):
    sampler, _ = make_sampler(tiny, "train/data/tiny.jsonl", videos)
    assert len(sampler) == 8
    orders = [sampler.epoch_order(e, seed=0) for e in range(3)]
    assert all(sorted(o) == list(range(8)) for o in orders)
    assert orders[0] != orders[1] and orders[0] == sampler.epoch_order(0, seed=0)
    shards = [sampler.epoch_order(1, seed=0, rank=r, world_size=3) for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(8)) and shards[0] == orders[1][0::3]


def test_collate_pads_right_and_keeps_visual_tokens_in_batch_order(tiny, short_data, videos):
    sampler, session = make_sampler(tiny, short_data, videos)
    samples = list(sampler.record_samples(sampler.turns(0)))
    pad = session.processor.pad_token_id
    batch = collate(samples, pad)
    lengths = [s.input_ids.numel() for s in samples]
    assert batch["input_ids"].shape == (3, max(lengths))
    for b, (s, n) in enumerate(zip(samples, lengths)):
        assert torch.equal(batch["input_ids"][b, :n], s.input_ids) and (batch["input_ids"][b, n:] == pad).all()
        assert (batch["labels"][b, n:] == IGNORE_INDEX).all()
        assert batch["attention_mask"][b].sum() == n
    assert torch.equal(batch["visual_tokens"], torch.cat([s.visual_tokens for s in samples]))
    assert int((batch["input_ids"] == session.model.video_token_id).sum()) == batch["visual_tokens"].shape[0]
