"""Specification of the end-of-run summary (hf_ser/evaluation/final.py: end_summary)."""

from hf_ser.evaluation.final import end_summary

REPORT = {
    "dataset": "demo",
    "protocol": "speaker-independent",
    "splits": {"validation": {"items": 48, "speakers": ["13", "14"]}, "test": {"items": 48, "speakers": ["15", "16"]}},
}


def test_end_summary_says_scores_protocol_files_and_next_command():
    results = {"test_ua": 0.9375, "test_wa": 0.9167, "eval_ua": 1.0}
    lines = end_summary(results, REPORT, "outputs/demo", example_clip="clips/a.wav").splitlines()
    assert lines == [
        "Finished: demo -> outputs/demo",
        "  test UA 93.8%, WA 91.7% on 48 clips; speaker-independent: 2 unseen speakers (15, 16)",
        "  validation UA 100.0% (speakers 13, 14: chose the checkpoint; the test split was scored once, after training)",
        "  confusion matrix: outputs/demo/confusion_matrix.png",
        "  model card:       outputs/demo/README.md",
        "  next: hf-ser predict outputs/demo clips/a.wav",
        "    or a real corpus: hf-ser train recipes/base.yaml --data_dir /path/to/emodb",
    ]


def test_end_summary_says_when_test_speakers_were_heard_in_training():
    report = {**REPORT, "dataset": "emodb", "protocol": "speaker-dependent"}
    summary = end_summary({"test_ua": 0.5, "test_wa": 0.5}, report, "run")
    assert "speaker-dependent: test clips may come from speakers heard in training" in summary
    assert "or a real corpus" not in summary and "next: hf-ser predict run speech.wav" in summary
