import json

import pytest
from conftest import TINY_DATA_ARGV
from run_folders import make_run_folder

from hf_ser.evaluation.evaluate_command import main as evaluate_main

TINY_LABELS = ["angry", "happy", "neutral", "sad"]


def _evaluate(model, corpus, output_dir, *extra):
    """`hf-ser evaluate` without the CLI's error handling, so a refusal arrives as its exception."""
    return evaluate_main(
        [
            str(model),
            *TINY_DATA_ARGV,
            "--data_dir",
            str(corpus),
            "--output_dir",
            str(output_dir),
            "--per_device_eval_batch_size",
            "8",
            "--report_to",
            "none",
            *extra,
        ]
    )


def test_labels_that_differ_from_the_models_are_refused_by_name(tmp_path, tiny_corpus):
    model = make_run_folder(tmp_path / "model")  # EmoDB-style labels: anger, boredom, happiness, sadness
    with pytest.raises(
        ValueError,
        match=r"the data has \['angry', 'happy', 'neutral', 'sad'\], which the model does "
        r"not know; the data has no items of \['anger', 'boredom', 'happiness'",
    ):
        _evaluate(model, tiny_corpus, tmp_path / "out")


def test_results_never_overwrite_the_models_own(tmp_path, tiny_corpus):
    model = make_run_folder(tmp_path / "model", labels=TINY_LABELS)
    with pytest.raises(ValueError, match="is the model's folder"):
        _evaluate(model, tiny_corpus, model)


def test_whole_corpus_split_scores_every_item(tmp_path, tiny_corpus):
    model = make_run_folder(tmp_path / "model", labels=TINY_LABELS)
    _evaluate(model, tiny_corpus, tmp_path / "out", "--split", "all")
    results = json.loads((tmp_path / "out" / "corpus_results.json").read_text())
    assert results["corpus_samples"] == 48 and 0.0 <= results["corpus_ua"] <= 1.0
    matrix = json.loads((tmp_path / "out" / "confusion_matrix.json").read_text())
    assert sum(map(sum, matrix["all"])) == 48 and matrix["labels"] == TINY_LABELS
    assert (tmp_path / "out" / "confusion_matrix_all.png").is_file()


@pytest.mark.slow
def test_evaluate_reproduces_the_runs_own_test_results(tiny_run, tiny_corpus, tmp_path):
    _evaluate(tiny_run, tiny_corpus, tmp_path / "out")
    ours = json.loads((tmp_path / "out" / "test_results.json").read_text())
    runs = json.loads((tiny_run / "test_results.json").read_text())
    for key in ("test_wa", "test_ua", "test_macro_f1", "test_samples"):
        assert ours[key] == runs[key], key
    assert ours["test_loss"] == pytest.approx(runs["test_loss"], rel=1e-5)
    assert (
        json.loads((tmp_path / "out" / "confusion_matrix.json").read_text())["test"]
        == json.loads((tiny_run / "confusion_matrix.json").read_text())["test"]
    )
    assert (tmp_path / "out" / "confusion_matrix.png").is_file()
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert report["splits"]["test"]["speakers"] == ["04"] and report["protocol"] == "speaker-independent"
