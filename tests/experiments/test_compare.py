import json

import pytest

from hf_ser.cli import main as cli_main
from hf_ser.experiments.compare import compare, load_result
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
        if line.startswith("| small-lr") or line.startswith("| noisy")
    }
    assert set(rows) == {"small-lr", "noisy"}
    for name in rows:
        results = json.loads((tmp_path / name / "test_results.json").read_text())
        cells = [cell.strip() for cell in rows[name].strip("|").split("|")]
        assert cells[3:6] == [f"{100 * results[f'test_{m}']:.2f}" for m in ("wa", "ua", "macro_f1")]
        assert cells[6] == "test speakers 04"
        assert cells[10] == "1 / 1"  # epochs run / max
    noisy = [cell.strip() for cell in rows["noisy"].strip("|").split("|")]
    small = [cell.strip() for cell in rows["small-lr"].strip("|").split("|")]
    assert noisy[0] == "noisy (wav2vec2-ser)" and noisy[1] == "wav2vec2 2x32, random init"
    assert (noisy[7], small[7]) == ("0.001", "0.0003")
    assert (noisy[11], noisy[13], small[13]) == ("0.05", "AddGaussianNoise", "none")
    assert noisy[12] == "0.3" and noisy[9] == "8"
    trainable = config["parameters"]["trainable"]
    assert noisy[2] == (f"{trainable / 1e6:.2f} M" if trainable >= 1e5 else f"{trainable / 1e3:.1f} k")
    for png in ("accuracy.png", "confusion_matrices.png"):
        assert (output / png).stat().st_size > 5000
    assert [row["name"] for row in json.loads((output / "comparison.json").read_text())] == ["small-lr", "noisy"]


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
