import json

import numpy as np
import pytest
from conftest import TINY_DATA_ARGV
from run_folders import make_run_folder, write_test_predictions

from hf_ser.cli import main as cli_main
from hf_ser.evaluation.evaluate_command import main as evaluate_main
from hf_ser.experiments.compare import compare, cross_corpus_matrix, load_result
from hf_ser.train import main as train_main


def _replace(argv, key, value):
    argv = list(argv)
    argv[argv.index(key) + 1] = value
    return argv


@pytest.mark.slow
def test_comparison_report_of_two_runs(tiny_train_argv, tmp_path):
    first = _replace(_replace(tiny_train_argv, "--output_dir", str(tmp_path / "small-lr")), "--num_train_epochs", "1")
    first = _replace(first, "--learning_rate", "3e-4")
    second = _replace(first, "--output_dir", str(tmp_path / "noisy"))
    second = _replace(second, "--learning_rate", "1e-3") + [
        "--augmentations",
        json.dumps([{"name": "AddGaussianNoise", "p": 0.5}]),
        "--weight_decay",
        "0.05",
    ]
    train_main(first)
    train_main(second)
    config = json.loads((tmp_path / "noisy" / "run_config.json").read_text())
    assert config["training_args"]["learning_rate"] == 1e-3 and config["parameters"]["trainable"] > 0
    assert not any("token" in key for group in config.values() for key in group)

    output = tmp_path / "comparison"
    assert cli_main(["compare", str(tmp_path / "small-lr"), str(tmp_path / "noisy"), "--output", str(output)]) == 0

    table = (output / "comparison.md").read_text()
    rows = {
        line.split(" ")[1]: line
        for line in table.splitlines()
        if line.startswith(("| small-lr (", "| noisy ("))  # the model rows, not the paired tests
    }
    assert set(rows) == {"small-lr", "noisy"}
    for name in rows:
        results = json.loads((tmp_path / name / "test_results.json").read_text())
        cells = [cell.strip() for cell in rows[name].strip("|").split("|")]
        assert cells[3:6] == [
            f"{100 * results[f'test_{m}']:.2f} ({100 * results[f'test_{m}_ci_low']:.2f}–"
            f"{100 * results[f'test_{m}_ci_high']:.2f})"
            for m in ("wa", "ua", "macro_f1")
        ]
        assert cells[6:9] == ["audiofolder:demo", "04", "held-out test split"]
        assert cells[12] == "1 / 1"  # epochs run / max
    noisy = [cell.strip() for cell in rows["noisy"].strip("|").split("|")]
    small = [cell.strip() for cell in rows["small-lr"].strip("|").split("|")]
    assert noisy[0] == "noisy (wav2vec2-ser)" and noisy[1] == "wav2vec2 2x32, random init"
    assert (noisy[9], small[9]) == ("0.001", "0.0003")
    assert (noisy[13], noisy[15], small[15]) == ("0.05", "AddGaussianNoise", "none")
    assert noisy[14] == "0.3" and noisy[11] == "8"
    assert "not scored on the same test set" not in table  # one corpus, one test speaker
    trainable = config["parameters"]["trainable"]
    assert noisy[2] == (f"{trainable / 1e6:.2f} M" if trainable >= 1e5 else f"{trainable / 1e3:.1f} k")
    for png in ("accuracy.png", "confusion_matrices.png"):
        assert (output / png).stat().st_size > 5000
    assert [row["name"] for row in json.loads((output / "comparison.json").read_text())] == ["small-lr", "noisy"]
    (test,) = json.loads((output / "paired_tests.json").read_text())  # both scored speaker 04's 12 clips
    assert (test["a"], test["b"], test["clips"]) == ("small-lr", "noisy", 12) and 0 < test["ua"]["p_value"] <= 1


def test_a_folder_without_results_is_refused_by_name(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: neither a `hf-ser cv` folder"):
        load_result(tmp_path / "empty")


def test_results_without_the_three_scores_are_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "test_results.json").write_text(json.dumps({"test_wa": 0.5}))
    with pytest.raises(KeyError, match="test_results.json has no \\['test_ua', 'test_macro_f1'\\]"):
        compare([run], tmp_path / "out")


def _predictions(references: np.ndarray, accuracy: float, seed: int) -> list:
    rng = np.random.default_rng(seed)
    wrong = (references + rng.integers(1, 4, len(references))) % 4
    return np.where(rng.random(len(references)) < accuracy, references, wrong).tolist()


def test_single_runs_show_bootstrap_intervals_and_paired_tests_on_shared_clips(tmp_path):
    references = np.random.default_rng(0).integers(0, 4, 200)
    weak = _predictions(references, 0.45, seed=1)
    runs = {
        "weak": (references.tolist(), weak),
        "strong": (references.tolist(), _predictions(references, 0.85, seed=2)),
        "weak-again": (references.tolist(), list(weak)),
        "fewer-clips": (references[:150].tolist(), weak[:150]),  # another test set
    }
    results = {}
    for name, (labels, predicted) in runs.items():
        results[name] = write_test_predictions(make_run_folder(tmp_path / name), labels, predicted, samples=500)
    output = tmp_path / "comparison"
    compare([tmp_path / name for name in runs], output, bootstrap_samples=500, seed=0)

    table = (output / "comparison.md").read_text()
    for name, scores in results.items():
        (row,) = [line for line in table.splitlines() if line.startswith(f"| {name} (")]
        ua = f"{100 * scores['test_ua']:.2f} ({100 * scores['test_ua_ci_low']:.2f}–{100 * scores['test_ua_ci_high']:.2f})"
        assert row.split(" | ")[4] == ua
    assert "95 % bootstrap confidence interval over the test clips" in table
    assert "95 % bootstrap CI over test clips (single runs); ± sample std over folds (CV)" in table

    tests = {(t["a"], t["b"]): t for t in json.loads((output / "paired_tests.json").read_text())}
    better = tests[("weak", "strong")]
    assert better["clips"] == 200 and better["ua"]["difference"] > 0.3 and better["ua"]["p_value"] < 0.01
    assert better["ua"]["difference"] == pytest.approx(results["strong"]["test_ua"] - results["weak"]["test_ua"])
    same = tests[("weak", "weak-again")]
    assert same["ua"] == {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}
    assert tests[("weak", "fewer-clips")]["skipped"].startswith(
        "the test sets differ: 50 clip(s) only in weak, 0 only in fewer-clips"
    )
    assert "- weak vs fewer-clips: not tested, the test sets differ" in table
    assert "| weak | strong | 200 |" in table
    assert (output / "accuracy.png").stat().st_size > 5000


def test_cross_corpus_matrix_holds_each_models_ua_per_test_corpus(tmp_path, tiny_corpus):
    emodb = make_run_folder(tmp_path / "emodb-run", test_ua=0.5)
    ravdess = make_run_folder(tmp_path / "ravdess-run", dataset="ravdess", test_ua=0.61)
    evaluation = tmp_path / "emodb-on-demo"
    label_map = {"angry": "anger", "happy": "happiness", "sad": "sadness"}
    argv = [str(emodb), *TINY_DATA_ARGV, "--data_dir", str(tiny_corpus), "--output_dir", str(evaluation)]
    cross = evaluate_main(argv + ["--label_map", json.dumps(label_map), "--report_to", "none"])

    output = tmp_path / "matrix"
    assert cli_main(["compare", "--matrix", str(emodb), str(ravdess), str(evaluation), "--output", str(output)]) == 0
    matrix = json.loads((output / "cross_corpus.json").read_text())
    assert matrix["rows"] == ["emodb", "ravdess"] and matrix["columns"] == ["audiofolder:demo", "emodb", "ravdess"]
    assert matrix["ua"] == [[cross["test_ua"], 0.5, None], [None, None, 0.61]]
    table = (output / "cross_corpus.md").read_text()
    assert f"| emodb | {100 * cross['test_ua']:.2f} | 50.00 | – |" in table
    assert "| ravdess | – | – | 61.00 |" in table
    assert (
        "model classes absent from the corpus: boredom; corpus labels the model lacks, clips dropped: neutral (12)"
        in table
    )
    assert (output / "cross_corpus.png").stat().st_size > 5000
    with pytest.raises(ValueError, match="both score a model trained on emodb on emodb: give one folder per cell"):
        cross_corpus_matrix([emodb, emodb], tmp_path / "twice")
    # An evaluation folder in the plain comparison takes its hyperparameters from the run it scored.
    (row,) = compare([evaluation], tmp_path / "plain", bootstrap_samples=0)
    assert (row["model_type"], row["learning_rate"], row["name"]) == ("wav2vec2-ser", 0.001, "emodb-on-demo")


def _row(table: str, name: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| {name} "))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_runs_on_different_corpora_or_test_speakers_are_labelled_and_warned_about(tmp_path, caplog):
    emodb = make_run_folder(tmp_path / "emodb-run")
    other_speakers = make_run_folder(tmp_path / "emodb-other-test", test_speakers=("11", "12"))
    ravdess = make_run_folder(
        tmp_path / "ravdess-run",
        dataset="ravdess",
        test_speakers=("21", "22", "23", "24"),
        test_ua=1 / 3,
        test_absent_classes=("anger",),
    )
    compare([emodb, other_speakers, ravdess], tmp_path / "out")
    table = (tmp_path / "out" / "comparison.md").read_text()
    assert _row(table, "emodb-run")[6:8] == ["emodb", "03, 08"]
    assert _row(table, "emodb-other-test")[6:8] == ["emodb", "11, 12"]
    assert _row(table, "ravdess-run")[4] == "33.33 (3 of 4 classes)"
    assert _row(table, "ravdess-run")[6:8] == ["ravdess", "21, 22, 23, 24"]
    warning = "these runs were not scored on the same test set (different corpus, test speakers or labels)"
    assert f"**Warning:** {warning}" in table and warning in caplog.text
    assert "ravdess-run: ravdess, test speakers 21, 22, 23, 24" in table
    assert "- ravdess-run: the test split has no item of anger; its UA and macro-F1 average over the other 3" in table


def test_runs_scored_on_one_test_set_get_no_warning(tmp_path, caplog):
    runs = [make_run_folder(tmp_path / name) for name in ("first", "second")]
    compare(runs, tmp_path / "out")
    assert "not scored on the same test set" not in (tmp_path / "out" / "comparison.md").read_text() + caplog.text
