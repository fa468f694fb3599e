import json

import pytest
from conftest import TINY_DATA_ARGV, TINY_SPEAKER_PATTERN
from run_folders import make_run_folder

from hf_ser.cli import main as cli_main
from hf_ser.evaluation.evaluate_command import main as evaluate_main
from hf_ser.evaluation.evaluate_command import run_data_defaults

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
    # a soft-label run's data keys: evaluation scores hard labels and reads no votes
    _evaluate(
        model, tiny_corpus, tmp_path / "out", "--split", "all", "--bootstrap_samples", "0", "--label_targets", "soft"
    )
    assert json.loads((tmp_path / "out" / "data_report.json").read_text())["label_votes"] == {}
    results = json.loads((tmp_path / "out" / "corpus_results.json").read_text())
    assert results["corpus_samples"] == 48 and 0.0 <= results["corpus_ua"] <= 1.0
    assert not [key for key in results if "_ci_" in key or "bootstrap" in key]  # bootstrap_samples 0: no intervals
    assert results["corpus_excluded_model_classes"] == [] and results["corpus_unmapped_labels"] == {}
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


@pytest.mark.slow
def test_evaluate_run_alone_scores_its_test_split_again_and_says_where_the_data_keys_came_from(
    tiny_run, tmp_path, capsys
):
    assert cli_main(["evaluate", str(tiny_run), "--output_dir", str(tmp_path / "again")]) == 0
    console = capsys.readouterr().out
    assert console.startswith(
        "data keys: dataset, data_dir, speaker_pattern, validation_speakers, test_speakers, max_duration_seconds, "
        f"seed from {tiny_run / 'run_config.json'}\n"
    )
    ours = json.loads((tmp_path / "again" / "test_results.json").read_text())
    runs = json.loads((tiny_run / "test_results.json").read_text())
    assert {key: ours[key] for key in ("test_ua", "test_wa", "test_samples")} == {
        key: runs[key] for key in ("test_ua", "test_wa", "test_samples")
    }
    # any data key can still be given: the command line wins over the run's own
    argv = ["evaluate", str(tiny_run), "--test_speakers", "03", "--validation_speakers", "04"]
    assert cli_main([*argv, "--output_dir", str(tmp_path / "other")]) == 0
    assert "; test_speakers, validation_speakers from the command line\n" in capsys.readouterr().out
    report = json.loads((tmp_path / "other" / "data_report.json").read_text())
    assert report["splits"]["test"]["speakers"] == ["03"]


def test_a_run_that_drew_its_split_pins_the_speakers_its_data_report_names(tmp_path):
    run = make_run_folder(tmp_path / "run", labels=TINY_LABELS)  # run_config without speaker lists, as a drawn split
    values, sources = run_data_defaults(str(run))
    assert values == {"max_duration_seconds": 3.0, "validation_speakers": ["09", "10"], "test_speakers": ["03", "08"]}
    assert sources["test_speakers"] == f"{run / 'data_report.json'}'s splits"
    assert sources["max_duration_seconds"] == str(run / "run_config.json")
    assert run_data_defaults(str(tmp_path / "a-hub-id-or-checkpoint")) == ({}, {})


def test_cross_corpus_evaluation_maps_labels_and_names_what_it_excludes(tmp_path, tiny_corpus, capsys):
    """A model trained on EmoDB-style labels (anger, boredom, happiness, sadness) scored on all of the tiny corpus
    (angry, happy, neutral, sad): three labels map, `neutral` is unknown to the model, `boredom` absent from the
    corpus. The run's own EmoDB speakers (its data_report) are not carried over to the other corpus."""
    model = make_run_folder(tmp_path / "model")
    label_map = {"angry": "anger", "happy": "happiness", "sad": "sadness"}
    argv = [str(model), "--dataset", "audiofolder", "--data_dir", str(tiny_corpus), "--speaker_pattern"]
    argv += [TINY_SPEAKER_PATTERN, "--label_map", json.dumps(label_map), "--split", "all", "--report_to", "none"]
    results = evaluate_main(argv + ["--output_dir", str(tmp_path / "out")])
    console = capsys.readouterr().out
    assert (
        f"another corpus than the run's (audiofolder at {tiny_corpus.resolve()}, not emodb): the run's corpus keys "
        "['test_speakers', 'validation_speakers'] are not used" in console
    )
    saved = json.loads((tmp_path / "out" / "corpus_results.json").read_text())
    assert saved["corpus_scored_classes"] == ["anger", "happiness", "sadness"]
    assert saved["corpus_excluded_model_classes"] == ["boredom"]
    assert saved["corpus_unmapped_labels"] == {"neutral": 12}  # 4 speakers x 3 clips
    assert saved["corpus_samples"] == 36
    assert "['boredom']" in console and "neutral (12 clips)" in console
    predictions = json.loads((tmp_path / "out" / "corpus_predictions.json").read_text())
    assert {row["predicted"] for row in predictions} <= {"anger", "happiness", "sadness"}  # boredom never predicted
    assert sorted({row["label"] for row in predictions}) == ["anger", "happiness", "sadness"]
    matrix = json.loads((tmp_path / "out" / "confusion_matrix.json").read_text())
    assert matrix["labels"] == ["anger", "happiness", "sadness"] and sum(map(sum, matrix["all"])) == 36
    correct = sum(row["label"] == row["predicted"] for row in predictions)
    assert saved["corpus_wa"] == pytest.approx(correct / 36) and results["corpus_ua"] == saved["corpus_ua"]
    assert saved["corpus_ua_ci_low"] <= saved["corpus_ua"] <= saved["corpus_ua_ci_high"]
    assert saved["corpus_bootstrap_samples"] == 1000
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert sum("'neutral' is not in the label set" in item["reason"] for item in report["skipped"]) == 12


def test_another_folder_of_an_audiofolder_run_keeps_the_runs_loader(tmp_path, tiny_corpus, capsys):
    model = make_run_folder(tmp_path / "model", dataset="audiofolder", labels=TINY_LABELS)
    run_config = json.loads((model / "run_config.json").read_text())
    run_config["data_args"].update(data_dir=str(tmp_path / "first_corpus"), speaker_pattern=TINY_SPEAKER_PATTERN)
    (model / "run_config.json").write_text(json.dumps(run_config))
    argv = [str(model), "--data_dir", str(tiny_corpus), "--split", "all", "--report_to", "none"]
    results = evaluate_main(argv + ["--output_dir", str(tmp_path / "out")])
    console = capsys.readouterr().out
    assert (
        f"another corpus than the run's (audiofolder at {tiny_corpus.resolve()}, not audiofolder at "
        f"{(tmp_path / 'first_corpus').resolve()}): the run's corpus keys ['data_dir', 'speaker_pattern', "
        "'test_speakers', 'validation_speakers'] are not used" in console
    )
    assert results["corpus_samples"] == 48  # read as an audiofolder, not as the default dataset (EmoDB)
