"""Each benchmark as published: its layout read, its official prompt, and its official scoring, checked
against small predictions scored by hand by the official script's rules (fixtures written here, in
each benchmark's real format)."""

import json

import pytest

from eval.benchmarks import BENCHMARKS, load_benchmark
from eval.benchmarks.ovbench import mcq_key
from eval.benchmarks.streamingbench import clock_seconds
from eval.report import summarize
from eval.runner import (
    UNKNOWN_DURATION_POLL_S,
    PredictionStore,
    evaluate_video,
    poll_times,
    read_records,
)
from videollama3.loading import build_session
from videollama3.questions import Poll
from vl3mem.cli import main


def write(path, data):
    path.write_text(json.dumps(data))
    return path


def scored_from_a_file(tmp_path, fmt, records):
    """The benchmark's table of ``records`` written as a predictions file and read back, as a run's summary does."""
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = summarize(read_records(path), benchmark=fmt)
    assert summary["benchmark_table"] == fmt.table(records)
    return summary["benchmark_table"]


def rec(task, prediction, answer, **extra):
    return {"id": f"{task}-{len(extra)}-{prediction}", "task": task, "prediction": prediction, "answer": answer,
            "options": ["w", "x", "y", "z"], "extra": extra}


# ------------------------------------------------------------------ OVO-Bench
def test_ovo_scores_as_its_official_script(tmp_path):
    fmt = BENCHMARKS["ovo"]
    records = [
        rec("EPM", "C", "C"), rec("EPM", "The answer is C.", "C"), rec("EPM", "B", "C"),
        rec("EPM", "B. A cat", "A"),  # the official rule is "the letter occurs in the reply": this counts
        rec("OCR", "A", "A"),
        rec("REC", "3", "3", count=3), rec("REC", "3 times", "3", count=3), rec("REC", "1, 2", "3", count=3),
        rec("REC", "13", "3", count=3),
        rec("SSR", "Y", "Yes", type=1), rec("SSR", "Yes.", "Yes", type=1), rec("SSR", "yes", "Yes", type=1),
        rec("SSR", "N", "No", type=0), rec("SSR", "Not sure", "No", type=0),  # "No" occurs in it
        rec("CRR", "No", "Yes", type=1),
    ]
    assert [fmt.score(r)["correct"] for r in records] == [
        True, True, False, True, True, True, True, False, False, True, True, False, True, True, False]
    table = scored_from_a_file(tmp_path, fmt, records)
    assert {t: (v["correct"], v["total"]) for t, v in table["tasks"].items()} == {
        "OCR": (1, 1), "EPM": (3, 4), "REC": (2, 4), "SSR": (4, 5), "CRR": (0, 1)}
    # groups average their tasks; the overall averages the groups (OVO-Bench's score.py)
    assert table["groups"] == {"real-time": 100.0, "backward": 75.0, "forward": round((50 + 80 + 0) / 3, 2)}
    assert table["overall"] == round((100 + 75 + 43.33) / 3, 2) and table["complete"]
    assert fmt.score(rec("EPM", None, "C"))["correct"] is None  # --no-model: not scored
    lines = "\n".join(fmt.table_lines(table))
    assert "| OCR | ACR | ATR | STU | FPD | OJR | real-time avg | EPM | ASI | HLD | backward avg | REC | SSR | CRR |" in lines


def test_ovo_forward_probes_are_asked_in_one_pass_with_the_official_prompts(tmp_path, videos, capsys):
    ann = write(tmp_path / "ovo.json", [
        {"id": 5, "task": "SSR", "video": "bikes.mp4", "tutorial": "ride", "test_info": [
            {"realtime": 4, "step": "pedal", "type": 1}, {"realtime": 2, "step": "stop", "type": 0}]},
        {"id": 6, "task": "REC", "video": "bikes.mp4", "activity": "jump", "test_info": [{"realtime": 3, "count": 0}]},
        {"id": 7, "task": "HLD", "video": "bikes.mp4", "realtime": 5, "question": "Who?", "options": ["a", "b"], "gt": 1},
    ])
    bench = load_benchmark("ovo", ann, videos)
    ssr = bench.videos[0].questions[0]
    assert bench.format.prompt(ssr).startswith("\nYou're watching a tutorial video which contain a sequential of steps. "
                                               "\nThe following is one step from the whole procedures: \nstop\n")
    rec_q = bench.videos[0].questions[1]
    assert "Now, answer the following question: How many times did they jump?\n" in bench.format.prompt(rec_q)
    out = tmp_path / "run"
    code = main(["eval", "--benchmark", "ovo", "--annotations", str(ann), "--video-root", str(videos), "--model",
                 "tiny", "--output-dir", str(out), "--quiet", "--max-new-tokens", "2", "--limit", "3"])
    assert code == 0, capsys.readouterr().err
    records = read_records(out / "predictions.jsonl")
    # --limit 3: the first three questions in file order (the two SSR probes and the REC probe), asked in time order
    assert [(r["id"], r["asked_at"], r["frames_seen"]) for r in records] == [("5#1", 2.0, 3), ("6#0", 3.0, 4), ("5#0", 4.0, 5)]
    assert all(isinstance(r["correct"], bool) for r in records)
    report = (out / "report.md").read_text()
    assert "## OVO-Bench" in report and "The overall is the mean of the groups present" in report


# ------------------------------------------------------------- StreamingBench
def sample_videos(tmp_path, videos, *names):
    root = tmp_path / "sb"
    (root / "videos").mkdir(parents=True)
    for name in names:
        (root / "videos" / name).symlink_to(videos / "bikes.mp4")
    return root


def test_streamingbench_files_as_published(tmp_path, videos):
    root = sample_videos(tmp_path, videos, "sample_1_real.mp4", "sample_2_omni.mp4", "sample_3_sqa.mp4",
                         "sample_4_proactive.mp4")
    choice = ["A. a red bike.", "B. a dog.", "C. a car.", "D. nothing."]
    real = write(root / "questions_real.json", [{"time": "[0:00:00 - 0:00:10]", "video_path": "./videos/sample_1_real.mp4",
                                                 "video_categories": "x", "questions": [
        {"task_type": "Object Recognition", "question": "What passes?", "time_stamp": "00:00:05", "answer": "A",
         "options": choice, "required_ability": "working memory"}]}])
    omni = write(root / "questions_omni.json", [{"video_path": "./videos/sample_2_omni.mp4", "questions": [
        {"task_type": "Emotion Recognition", "question": "How does she sound?", "time_stamp": "0:00:03",
         "answer": "B", "options": choice},
        {"task_type": "Misleading Context Understanding", "question": "What is there?", "time_stamp": "00:00:04",
         "answer": "C", "options": choice}]}])
    sqa = write(root / "questions_sqa.json", [[
        {"video_path": "./videos/sample_3_sqa.mp4", "questions": [
            {"task_type": "Sequential Question Answering", "question": "Who serves?", "time_stamp": "00:00:02",
             "answer": "A", "options": ["Wang.", "Fan.", "Xu.", "Ma."]}]},
        {"video_path": "./videos/sample_3_sqa.mp4", "questions": [
            {"task_type": "Sequential Question Answering", "question": "His score now?", "time_stamp": "00:00:06",
             "answer": "C", "options": ["2.", "6.", "7.", "4."]}]}]])
    proactive = write(root / "questions_proactive.json", [{"video_path": "./videos/sample_4_proactive.mp4", "questions": [
        {"task_type": "Proactive Output", "question": 'When the score is 3, output "3".', "time_stamp": "00:00:01",
         "ground_truth_time_stamp": "00:00:03", "ground_truth_output": "3"}]}])
    bench = load_benchmark("streamingbench", [real, omni, sqa, proactive], root)
    questions = {q.id: q for v in bench.videos for q in v.questions}
    assert sorted(questions) == ["questions_omni:0:0", "questions_omni:0:1", "questions_proactive:0:0",
                                 "questions_real:0:0", "questions_sqa:0.0:0", "questions_sqa:0.1:0"]
    assert [questions[k].order for k in sorted(questions)] == [1, 2, 5, 0, 3, 4]  # file order over the files
    fmt = bench.format
    assert fmt.prompt(questions["questions_real:0:0"]).endswith(
        "the correct option.\n\nQuestion: What passes?\n\nOptions:\nA. a red bike.\nB. a dog.\nC. a car.\nD. nothing."
        "\n\nThe best option is:")
    assert questions["questions_omni:0:0"].extra["needs_audio"] and "needs_audio" not in questions["questions_omni:0:1"].extra
    second = fmt.prompt(questions["questions_sqa:0.1:0"])  # the earlier question and its answer, as context
    assert ("option.\n\nHere are the contextual information related to the video. Please answer the questions based on "
            "the contextual information: At timestamp 00:00:02, the following question and answer occurred: Question: "
            "Who serves?; Options: A. Wang., B. Fan., C. Xu., D. Ma.; Answer: A; \n\nHere is the question.") in second
    assert "Options:\nA. 2.\nB. 6.\nC. 7.\nD. 4.\n\nThe best option is:" in second
    po = questions["questions_proactive:0:0"]
    assert (po.time, list(po.poll.times)) == (1.0, [2.0, 3.0, 4.0, 5.0, 6.0, 7.0])  # time_stamp + 1 .. ground truth + 4
    assert 'Question: When the score is 3, output "3". Is it the right time to output "3"? You can only answer yes or no.' \
        in po.poll.query
    assert clock_seconds("1:02:03", "t") == 3723


def test_streamingbench_scores_as_its_official_script(tmp_path):
    fmt = BENCHMARKS["streamingbench"]
    real = [rec("Counting", r, "B", file="real") for r in ("B", "B. two", " B", "b", "", "A")]
    omni = [rec("Emotion Recognition", "C", "C", file="omni", needs_audio=True),
            rec("Anomaly Context Understanding", "D", "C", file="omni")]
    po = {"ground_truth_time": 10, "ground_truth_output": "3", "file": "proactive"}
    proactive = [{**rec("Proactive Output", p, "3", **po), "polls": [{}], "last_time": t}
                 for p, t in (("It is 3 now", 12.0), ("4", 9.0), ("3", 13.0))]
    assert [fmt.score(r)["correct"] for r in real] == [True, True, False, False, None, False]  # first character
    assert [fmt.score(r) for r in proactive] == [{"correct": True, "on_time": True}, {"correct": False, "on_time": True},
                                                 {"correct": False, "on_time": False}]  # within 2 s, output said
    table = scored_from_a_file(tmp_path, fmt, real + omni + proactive)
    assert table["files"]["real"]["all"] == {"correct": 2, "total": 5, "accuracy": 40.0}  # the empty reply left out
    assert table["files"]["proactive"]["all"] == {"correct": 1, "total": 3, "on_time": 2, "accuracy": 33.33,
                                                   "on_time_accuracy": 66.67}
    assert table["columns"]["Real-Time Visual Understanding"]["CT"] == 40.0
    assert table["columns"]["Omni-Source Understanding (needs audio)"]["ER"] == 100.0
    assert table["needs_audio"] == {"correct": 1, "total": 1, "accuracy": 100.0}
    assert table["video_only"] == {"correct": 3, "total": 9, "accuracy": 33.33}
    summary = summarize(real + omni + proactive, benchmark=fmt)  # never mixed into the video-only averages
    assert summary["accuracy"]["needs_audio"]["total"] == 1 and summary["accuracy"]["scored"] == 9


def test_a_proactive_question_is_polled_until_the_model_says_yes(tiny, videos, tmp_path):
    (video,) = load_benchmark("streamingbench", write(tmp_path / "questions_proactive.json", [
        {"video_path": "bikes.mp4", "questions": [
            {"task_type": "Proactive Output", "question": 'When a bike passes, output "bike".', "time_stamp": "00:00:00",
             "ground_truth_time_stamp": "00:00:04", "ground_truth_output": "bike"}]}]), videos).videos
    session = build_session(*tiny)
    asked = []

    def ask(text, max_new_tokens=16, entries=None, **_):  # a test double around the real session's memory
        asked.append((session.time, session.frames_seen, "right time" in text))
        reply = ("yes" if session.time >= 3 else "no") if "right time" in text else "a bike, here"
        return type("Answer", (), {"answer": reply})()

    session.ask = ask
    store = PredictionStore(tmp_path / "run")
    result = evaluate_video(session, video, 1.0, store, BENCHMARKS["streamingbench"], max_new_tokens=2)
    assert result["asked"] == 1 and not result["unanswered"]
    # polls at 1, 2, 3 s, each seeing no frame after its time; at the first yes the question itself
    assert asked == [(1.0, 2, True), (2.0, 3, True), (3.0, 4, True), (3.0, 4, False)]
    (record,) = read_records(store.path)
    assert [p["time"] for p in record["polls"]] == [1.0, 2.0, 3.0] and record["answered_at"] == 3.0
    assert (record["last_time"], record["prediction"], record["correct"], record["on_time"]) == (3.0, "a bike, here", True, True)


def test_a_ground_truth_far_past_the_video_is_polled_to_its_end_only(tiny, videos, tmp_path):
    """An annotation whose ground truth lies ~11,000 years out (a typo, or an attack) loads at once and is
    polled once a second to the end of the 10 s video, as any other: its polls are a range, cut by bisection."""
    (video,) = load_benchmark("streamingbench", write(tmp_path / "questions_proactive.json", [
        {"video_path": "bikes.mp4", "questions": [
            {"task_type": "Proactive Output", "question": 'When a bike passes, output "bike".', "time_stamp": "00:00:01",
             "ground_truth_time_stamp": "99999999:00:00", "ground_truth_output": "bike"}]}]), videos).videos
    (question,) = video.questions
    assert len(question.poll.times) == 359_999_996_400 + 4 - 1
    assert poll_times(question.poll, 10.0) == [float(t) for t in range(2, 12)]  # up to LATE_S past the end
    assert poll_times(Poll([1.0, 2.5, 7.0], "q"), 1.5) == [1.0, 2.5] and poll_times(Poll([], "q"), 5.0) == []
    unknown = poll_times(question.poll, 0.0)  # a raw stream: at most UNKNOWN_DURATION_POLL_S of polls
    assert (unknown[0], unknown[-1], len(unknown)) == (2.0, 2.0 + UNKNOWN_DURATION_POLL_S, 86_401)
    session = build_session(*tiny)
    store = PredictionStore(tmp_path / "run")
    result = evaluate_video(session, video, 1.0, store, BENCHMARKS["streamingbench"], max_new_tokens=1, no_model=True)
    assert result["asked"] == 1 and not result["unanswered"]
    (record,) = read_records(store.path)
    assert [p["time"] for p in record["polls"]] == [float(t) for t in range(2, 12)]  # 11 s: after the last frame
    assert record["answered_at"] is None and record["last_time"] == 359_999_996_404.0


# --------------------------------------------------------------------- OVBench
@pytest.mark.parametrize("reply, key", [
    ("A", "A"), ("(A)", "A"), ("a", "A"), ("B. yes", "B"), ("The answer is A", "A"), ("Definitely C, not A", "C"),
    ("I think so", "i think so"), ("(A) yes", "A"), ("", ""),
])
def test_ovbench_letter_extraction_is_the_official_mcq_acc(reply, key):
    assert mcq_key(reply) == key


def test_ovbench_scores_and_tables_both_layouts(tmp_path):
    fmt = BENCHMARKS["ovbench"]
    stream = [{**rec("EPM", r, "A", layout="stream"), "subtask": "past", "options": ["yes", "no"]}
              for r in ("A", "(B) no", "")]
    lmms = [{**rec("STP", r, "B", layout="lmms"), "subtask": "now"} for r in ("B", "", "C")]
    assert [fmt.score(r)["correct"] for r in stream] == [True, False, False]  # an empty reply counts, wrong
    assert [fmt.score(r)["correct"] for r in lmms] == [True, None, False]  # lmms-eval leaves it out
    table = scored_from_a_file(tmp_path, fmt, stream + lmms)
    assert table["pairs"] == {"EPM/past": {"correct": 1, "total": 3, "accuracy": 33.33},
                              "STP/now": {"correct": 1, "total": 2, "accuracy": 50.0}}
    assert (table["avg"], table["micro"], table["total"]) == (round((33.33 + 50) / 2, 2), 40.0, 5)


def test_ovbench_lmms_eval_layout_on_a_frame_folder(tmp_path, videos):
    from PIL import Image

    folder = tmp_path / "root" / "1j20qq1JyX4"
    folder.mkdir(parents=True)
    for i in range(12):
        Image.new("RGB", (64, 48), (i * 20, 0, 0)).save(folder / f"{i + 1:05d}.jpg")
    ann = write(tmp_path / "ava.json", [
        {"middle_frame_timestamp": 903.0, "question": "Still 2 people?", "answer": "No", "sub_answer_type": "H-2",
         "answer_type": "Hallucination", "video": "1j20qq1JyX4", "candidates": ["Yes", "No"], "start": 0.0,
         "end": 8.0, "fps": 1},
        {"middle_frame_timestamp": 5.0, "question": "Where?", "answer": "left", "sub_answer_type": "S-1",
         "answer_type": "Spatial", "video": "bikes.mp4", "candidates": ["left", "right"], "start": 0.0, "end": 5.0}])
    (tmp_path / "root" / "bikes.mp4").symlink_to(videos / "bikes.mp4")
    bench = load_benchmark("ovbench", ann, tmp_path / "root")
    folder_video, bikes = sorted(bench.videos, key=lambda v: v.video.name)
    (q,) = folder_video.questions
    assert (folder_video.frame_rate, q.time, q.answer, q.extra["window"], q.extra["clip_offset"]) == (1.0, 8.0, "B", [0.0, 8.0], 895.0)
    assert bench.format.prompt(q) == "Still 2 people?\nA. Yes\nB. No\nAnswer with the option's letter from the given choices directly."
    assert bikes.frame_rate is None and bench.system_prompt is None
    out = tmp_path / "run"
    code = main(["eval", "--benchmark", "ovbench", "--annotations", str(ann), "--video-root", str(tmp_path / "root"),
                 "--model", "tiny", "--no-model", "--output-dir", str(out), "--quiet"])
    assert code == 0
    by_id = {r["id"]: r for r in read_records(out / "predictions.jsonl")}
    assert (by_id["ava:0"]["asked_at"], by_id["ava:0"]["frames_seen"]) == (8.0, 9)  # frames 0..8 s of the folder


# -------------------------------------------------------------- robust runs
def test_skip_bad_skips_a_video_that_cannot_be_read(tmp_path, videos, capsys):
    root = tmp_path / "root"
    root.mkdir()
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    (root / "bikes.mp4").symlink_to(videos / "bikes.mp4")
    ann = tmp_path / "a.jsonl"
    ann.write_text("\n".join(json.dumps({"video": v, "questions": [
        {"id": v, "time": 2, "question": "What?", "options": ["a", "b"], "answer": "A"}]}) for v in ("broken.mp4", "bikes.mp4")))
    argv = ["eval", "--benchmark", "jsonl", "--annotations", str(ann), "--video-root", str(root), "--model", "tiny",
            "--no-model", "--quiet"]
    assert main([*argv, "--output-dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert "broken.mp4" in err and "--skip-bad" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert main([*argv, "--output-dir", str(tmp_path / "b"), "--skip-bad"]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["questions"] == 1 and summary["unanswered"] == ["broken.mp4"]
    (skipped,) = summary["skipped_videos"]
    assert "broken.mp4" in skipped and "1 questions not asked" in skipped
    assert "Videos skipped (--skip-bad)" in (tmp_path / "b" / "report.md").read_text()


def test_a_clip_that_holds_no_frame_leaves_its_questions_unanswered_not_answered_from_nothing(tmp_path, videos, capsys):
    """An OVBench clip after bikes.mp4's last frame (9.96 s) streams nothing: its question is reported
    unanswered with the reason, never answered from an empty memory; the other clip's is answered."""
    question = {"question": "What?", "options": ["A. a", "B. b"], "answer": "A", "answer_type": "x"}
    root = tmp_path / "root"
    root.mkdir()
    for name in ("bikes.mp4", "bikes2.mp4"):
        (root / name).symlink_to(videos / "bikes.mp4")
    ann = write(tmp_path / "ovb.json", [
        {"video_id": "bikes2.mp4", "clip": [9.98, 9.99], "questions": [{**question, "middle_frame_timestamp": 9.99}]},
        {"video_id": "bikes.mp4", "clip": [2, 6], "questions": [{**question, "middle_frame_timestamp": 5}]}])
    assert main(["eval", "--benchmark", "ovbench", "--annotations", str(ann), "--video-root", str(root), "--model",
                 "tiny", "--max-new-tokens", "2", "--quiet", "--output-dir", str(tmp_path / "out")]) == 0
    assert "no frame of " in capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [(r["id"], r["frames_seen"]) for r in records] == [("bikes.mp4#0", 4)]  # frames 2, 3, 4, 5 s
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["unanswered"] == ["bikes2.mp4#0"]
    (why,) = summary["streams_stopped"]
    assert why.startswith("no frame of ") and why.endswith("bikes2.mp4 at or after start 9.98s: its last frame is at 9.96s")
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"## Streams that stopped early\n\n- {why}\n" in report
    assert "## Questions not answered (their stream stopped before them)\n\n- bikes2.mp4#0\n" in report

    # a clip starting between two frames (bikes.mp4: 25 frames/s, 2.0 then 2.04 s), asked at its start
    ann = write(tmp_path / "early.json", [
        {"video_id": "bikes.mp4", "clip": [2.01, 6], "questions": [{**question, "middle_frame_timestamp": 2.01},
                                                                   {**question, "middle_frame_timestamp": 3}]}])
    argv = ["eval", "--benchmark", "ovbench", "--annotations", str(ann), "--video-root", str(root), "--model",
            "tiny", "--max-new-tokens", "2", "--quiet"]
    assert main([*argv, "--output-dir", str(tmp_path / "early")]) == 2
    assert ("question bikes.mp4#0: at 2.01s no frame of the part of the video streamed (from 2.01s) has come yet; "
            "its answer would see no frame") in capsys.readouterr().err
    assert main([*argv, "--output-dir", str(tmp_path / "early2"), "--skip-bad"]) == 0
    records = [json.loads(line) for line in (tmp_path / "early2" / "predictions.jsonl").read_text().splitlines()]
    assert [(r["id"], r["frames_seen"]) for r in records] == [("bikes.mp4#1", 1)]  # the frame at 2.04 s
    summary = json.loads((tmp_path / "early2" / "summary.json").read_text())
    assert summary["unanswered"] == ["bikes.mp4#0"] and "no frame of the part" in summary["skipped_records"][0]


def test_a_question_the_model_cannot_take_stops_the_run_or_is_skipped_and_reported(tmp_path, videos, capsys):
    """A prompt beyond the language model's context (8192 positions for the tiny model; its tokenizer
    takes a token a letter) is refused by ask(): the run stops naming the question, or with --skip-bad
    the question is reported, left unanswered, and the others are answered."""
    ann = tmp_path / "a.jsonl"
    ann.write_text(json.dumps({"video": "bikes.mp4", "questions": [
        {"id": "long", "time": 2, "question": "w" * 9000, "options": ["a", "b"], "answer": "A"},
        {"id": "short", "time": 3, "question": "What?", "options": ["a", "b"], "answer": "A"}]}))
    argv = ["eval", "--benchmark", "jsonl", "--annotations", str(ann), "--video-root", str(videos), "--model", "tiny",
            "--max-new-tokens", "1", "--quiet"]
    assert main([*argv, "--output-dir", str(tmp_path / "a")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("vl3mem: error: ") and "question long: the question is" in line
    assert "does not fit the model's context of 8192 tokens" in line and line.endswith("(use --skip-bad to report it and go on)")
    assert main([*argv, "--output-dir", str(tmp_path / "b"), "--skip-bad"]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["questions"] == 1 and summary["unanswered"] == ["long"]
    (skipped,) = summary["skipped_records"]
    assert "question long: the question is" in skipped
    assert [r["id"] for r in read_records(tmp_path / "b" / "predictions.jsonl")] == ["short"]
    assert "Records skipped (--skip-bad)" in (tmp_path / "b" / "report.md").read_text()
