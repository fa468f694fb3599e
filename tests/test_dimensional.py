"""Dimensional emotion end to end (`task: dimensional`): a run on a look-alike IEMOCAP tree selects its checkpoint on
validation mean CCC, writes CCC per dimension with bootstrap intervals into test_results.json and the model card's
model-index, and saves a model that gives the in-training values with and without hf-ser; `hf-ser predict` reports
the dimensions and `hf-ser compare` their CCC."""

import json

import numpy as np
import pytest
import soundfile
import torch
from conftest import TINY_WAV2VEC2, run_without_hf_ser
from dimensional_look_alikes import tiny_dimensional_model, write_iemocap
from huggingface_hub import ModelCard
from transformers import AutoFeatureExtractor, AutoModel

from hf_ser.cli import main as cli_main
from hf_ser.evaluation.metrics import concordance_correlation
from hf_ser.experiments.compare import compare
from hf_ser.train import main as train_main

DIMENSIONS = ["arousal", "valence", "dominance"]
pytestmark = pytest.mark.slow


def dimensional_argv(corpus, output_dir) -> list[str]:
    return [
        "--dataset",
        "iemocap",
        "--data_dir",
        str(corpus),
        "--task",
        "dimensional",
        "--validation_speakers",
        "Ses02F",
        "Ses02M",
        "--test_speakers",
        "Ses03F",
        "Ses03M",
        "--backbone_config",
        json.dumps(TINY_WAV2VEC2),
        "--head_hidden_sizes",
        "16",
        "--max_duration_seconds",
        "1.0",
        "--num_train_epochs",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "1e-3",
        "--bootstrap_samples",
        "200",
        "--output_dir",
        str(output_dir),
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--seed",
        "7",
    ]


@pytest.fixture(scope="module")
def dimensional_run(tmp_path_factory):
    corpus = write_iemocap(tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release")
    run_dir = tmp_path_factory.mktemp("dimensional") / "run"
    results = train_main(dimensional_argv(corpus, run_dir))
    return run_dir, results


def test_test_results_hold_ccc_per_dimension_their_mean_and_intervals_from_the_per_clip_values(dimensional_run):
    run_dir, results = dimensional_run
    test = json.loads((run_dir / "test_results.json").read_text())
    for name in DIMENSIONS:
        assert -1 <= test[f"test_ccc_{name}"] <= 1
        assert test[f"test_ccc_{name}_ci_low"] <= test[f"test_ccc_{name}"] <= test[f"test_ccc_{name}_ci_high"]
    assert test["test_ccc"] == pytest.approx(np.mean([test[f"test_ccc_{name}"] for name in DIMENSIONS]))
    assert test["test_samples"] == 8 and test["test_bootstrap_samples"] == 200
    assert not any(key.startswith(("test_ua", "test_wa")) for key in test)
    assert results["test_ccc"] == test["test_ccc"]
    clips = json.loads((run_dir / "test_predictions.json").read_text())
    references = [[clip["label"][name] for name in DIMENSIONS] for clip in clips]
    predicted = [[clip["predicted"][name] for name in DIMENSIONS] for clip in clips]
    recomputed = concordance_correlation(predicted, references)
    assert recomputed == pytest.approx([test[f"test_ccc_{name}"] for name in DIMENSIONS])
    assert {1.0, 5.0} & {value for row in references for value in row}  # IEMOCAP's own 1-5 scale, not rescaled
    assert not (run_dir / "confusion_matrix.json").exists()


def test_the_checkpoint_is_chosen_on_validation_mean_ccc(dimensional_run):
    run_dir, _ = dimensional_run
    state = json.loads((run_dir / "trainer_state.json").read_text())
    evaluations = [entry for entry in state["log_history"] if "eval_ccc" in entry]
    assert len(evaluations) == 2
    best = max(evaluations, key=lambda entry: entry["eval_ccc"])
    assert state["best_metric"] == best["eval_ccc"] and state["best_global_step"] == best["step"]
    run_config = json.loads((run_dir / "run_config.json").read_text())
    assert run_config["training_args"]["metric_for_best_model"] == "ccc"


def test_the_model_card_model_index_carries_ccc_per_dimension(dimensional_run):
    run_dir, _ = dimensional_run
    card = ModelCard.load(run_dir / "README.md")
    test = json.loads((run_dir / "test_results.json").read_text())
    index = {
        (result.dataset_split, result.metric_name): result.metric_value
        for result in card.data.eval_results
        if result.metric_type == "ccc"
    }
    for name in DIMENSIONS:
        assert index[("test", f"test CCC {name}")] == round(test[f"test_ccc_{name}"], 4)
    assert index[("test", "test mean CCC")] == round(test["test_ccc"], 4)
    assert not any(result.metric_type == "accuracy" for result in card.data.eval_results)
    assert f"| test | 8 | {100 * test['test_ccc_arousal']:.2f}" not in card.text  # CCC is not a percentage
    assert f"{test['test_ccc_arousal']:.3f}" in card.text


def test_the_saved_model_gives_the_in_training_values_with_and_without_hf_ser(dimensional_run, tmp_path):
    run_dir, _ = dimensional_run
    clips = json.loads((run_dir / "test_predictions.json").read_text())
    expected = np.array([[clip["predicted"][name] for name in DIMENSIONS] for clip in clips])
    model = AutoModel.from_pretrained(run_dir).eval()
    extractor = AutoFeatureExtractor.from_pretrained(run_dir)
    assert [model.config.id2label[i] for i in range(3)] == DIMENSIONS and model.config.problem_type == "regression"
    with torch.no_grad():
        values = [
            model(
                **extractor(soundfile.read(clip["path"], dtype="float32")[0], sampling_rate=16000, return_tensors="pt")
            )
            .logits[0]
            .tolist()
            for clip in clips
        ]
    np.testing.assert_allclose(values, expected, atol=1e-5)
    paths = [clip["path"] for clip in clips]
    cnn = tiny_dimensional_model("ser-cnn").eval()  # the other family, in the same fresh interpreter
    cnn.save_pretrained(tmp_path / "cnn")
    AutoFeatureExtractor.from_pretrained(run_dir).save_pretrained(tmp_path / "cnn")
    with torch.no_grad():
        cnn_expected = cnn(torch.tensor(soundfile.read(paths[0], dtype="float32")[0])[None]).logits[0].tolist()
    last_line = run_without_hf_ser(
        f"""
        import soundfile, torch
        from transformers import AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification, pipeline
        model = AutoModel.from_pretrained({str(run_dir)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        extractor = AutoFeatureExtractor.from_pretrained({str(run_dir)!r})
        with torch.no_grad():
            values = [
                model(**extractor(soundfile.read(path, dtype="float32")[0], sampling_rate=16000, return_tensors="pt"))
                .logits[0].tolist()
                for path in {paths!r}
            ]
            cnn = AutoModelForAudioClassification.from_pretrained({str(tmp_path / "cnn")!r}, trust_remote_code=True)
            cnn_values = cnn.eval()(torch.tensor(soundfile.read({paths[0]!r}, dtype="float32")[0])[None]).logits[0]
        regressor = pipeline("audio-classification", model={str(run_dir)!r}, trust_remote_code=True)
        scores = {{p["label"]: p["score"] for p in regressor(soundfile.read({paths[0]!r}, dtype="float32")[0], top_k=None)}}
        print(json.dumps({{"values": values, "cnn": cnn_values.tolist(), "pipeline": scores}}))
    """.replace("import soundfile, torch", "import json, soundfile, torch"),
        cwd=tmp_path,
    )
    reloaded = json.loads(last_line)
    np.testing.assert_allclose(reloaded["values"], expected, atol=1e-5)
    np.testing.assert_allclose(reloaded["cnn"], cnn_expected, atol=1e-5)
    # the pipeline hands out the dimension values themselves (problem_type regression: no softmax)
    assert [reloaded["pipeline"][name] for name in DIMENSIONS] == pytest.approx(expected[0], abs=1e-5)


def test_predict_reports_the_dimension_values_and_their_timeline(dimensional_run, tmp_path, capsys):
    run_dir, _ = dimensional_run
    clips = json.loads((run_dir / "test_predictions.json").read_text())
    assert cli_main(["predict", str(run_dir), clips[0]["path"], "--format", "json", "--no-progress"]) == 0
    output = json.loads(capsys.readouterr().out)
    (prediction,) = output["predictions"]
    assert output["dimensions"] == DIMENSIONS and "label" not in prediction and "probabilities" not in prediction
    assert [prediction["dimensions"][name] for name in DIMENSIONS] == pytest.approx(
        [clips[0]["predicted"][name] for name in DIMENSIONS], abs=1e-5
    )
    plot = tmp_path / "timeline.png"
    argv = ["predict", str(run_dir), clips[0]["path"], "--window", "0.3", "--hop", "0.1", "--format", "csv"]
    assert cli_main([*argv, "--plot", str(plot), "--no-progress"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "file,segment,start,end,arousal,valence,dominance"
    segments = [row.split(",") for row in rows[2:]]
    assert len(segments) >= 4 and plot.stat().st_size > 0
    file_values = [float(v) for v in rows[1].split(",")[4:]]
    assert file_values == pytest.approx(np.mean([[float(v) for v in row[4:]] for row in segments], axis=0))


def test_the_published_folder_and_its_space_carry_the_demo_app_which_serves_the_dimension_values(
    dimensional_run, tmp_path
):
    from hf_ser.hub.demo import APP_FILE, REQUIREMENTS_FILE, load_app
    from hf_ser.hub.publish import build_space_folder, build_upload_folder
    from hf_ser.inference.predict import EmotionClassifier

    run_dir, _ = dimensional_run
    upload = build_upload_folder(run_dir, tmp_path / "upload", repo_id="me/iemocap-avd")
    space = build_space_folder("me/iemocap-avd", tmp_path / "space")
    for folder in (upload, space):
        assert (folder / "app.py").read_bytes() == APP_FILE.read_bytes()
        assert (folder / "requirements.txt").read_bytes() == REQUIREMENTS_FILE.read_bytes()
    assert "the value of each dimension" in (space / "README.md").read_text()
    backend = load_app().TransformersBackend(str(upload))  # what the Space runs, on the uploaded files
    clip = soundfile.read(json.loads((run_dir / "test_predictions.json").read_text())[0]["path"], dtype="float32")[0]
    assert backend.dimensional and backend.labels == DIMENSIONS
    np.testing.assert_allclose(
        backend.probabilities([clip]), EmotionClassifier(run_dir).probabilities([clip]), atol=1e-5
    )


def test_compare_shows_ccc_columns_next_to_a_categorical_run(dimensional_run, tiny_run, tmp_path):
    run_dir, _ = dimensional_run
    test = json.loads((run_dir / "test_results.json").read_text())
    compare([tiny_run, run_dir], tmp_path / "comparison")
    table = (tmp_path / "comparison" / "comparison.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| model"))
    assert "| mean CCC | CCC per dimension |" in header
    # both folders are called `run`, so compare names each row by its path
    row = next(line for line in table.splitlines() if line.startswith(f"| {run_dir} ("))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    mean = cells[columns.index("mean CCC")]
    assert mean == f"{test['test_ccc']:.3f} ({test['test_ccc_ci_low']:.3f}–{test['test_ccc_ci_high']:.3f})"
    assert cells[columns.index("CCC per dimension")].startswith(f"arousal {test['test_ccc_arousal']:.3f} (")
    assert cells[columns.index("UA %")] == "–"
    categorical = next(line for line in table.splitlines() if line.startswith(f"| {tiny_run} ("))
    assert [cell.strip() for cell in categorical.strip("|").split("|")][columns.index("mean CCC")] == "–"
    assert (tmp_path / "comparison" / "ccc.png").stat().st_size > 0
    assert "a dimensional run has none" in table  # no paired test between a classifier and a regressor
