import json

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from run_folders import LABELS, make_run_folder

from hf_ser.hub.model_card import build_model_card, save_model_card


def _metrics(card) -> dict:
    return {
        (r.dataset_split, r.metric_type, r.metric_name.startswith("cross-validation")): r.metric_value
        for r in card.data.eval_results
    }


def test_card_round_trips_through_model_card_load_and_its_model_index_validates(tmp_path):
    run = make_run_folder(tmp_path / "run")
    path = save_model_card(run, repo_id="me/emodb-ser")
    loaded = ModelCard.load(path)
    assert loaded.data.to_dict() == build_model_card(run, repo_id="me/emodb-ser").data.to_dict()
    name, results = model_index_to_eval_results(loaded.data.to_dict()["model-index"])
    assert name == "emodb-ser" and len(results) == 6  # WA, UA, macro-F1 on validation and test
    assert _metrics(loaded)[("test", "recall", False)] == 0.5
    assert _metrics(loaded)[("test", "f1", False)] == 0.4567
    assert _metrics(loaded)[("validation", "accuracy", False)] == 0.6
    data = loaded.data
    assert data.library_name == "transformers" and data.pipeline_tag == "audio-classification"
    assert {"speech-emotion-recognition", "hf-ser", "audio-classification"} <= set(data.tags)
    assert data.language == "de" and data.license == "apache-2.0" and data.base_model is None
    assert data.metrics == ["accuracy", "recall", "f1"]


def test_card_states_protocol_labels_results_and_usage(tmp_path):
    text = str(build_model_card(make_run_folder(tmp_path / "run"), repo_id="me/emodb-ser"))
    assert "**speaker-independent**" in text and "| test | 107 | 5.0 | 03, 08 |" in text
    assert all(f"| {i} | {label} |" in text for i, label in enumerate(LABELS))
    assert "| test | 107 | 62.50 % | 50.00 % | 45.67 % |" in text
    assert 'pipeline("audio-classification", model="me/emodb-ser", trust_remote_code=True)' in text
    assert "import hf_ser" in text
    assert "Burkhardt" in text and "Baevski" in text  # the corpus and the encoder family are cited
    assert "surveillance" in text and "hiring" in text and "Consent" in text and "acted German speech" in text
    assert "- `learning_rate`: 0.001" in text


def test_speaker_dependent_split_is_flagged(tmp_path):
    text = str(build_model_card(make_run_folder(tmp_path / "run", protocol="speaker-dependent")))
    assert "**speaker-dependent**" in text and "overestimate" in text


def test_pretrained_backbone_is_the_base_model(tmp_path):
    card = build_model_card(make_run_folder(tmp_path / "run", backbone="facebook/wav2vec2-base"))
    assert card.data.base_model == "facebook/wav2vec2-base"
    assert "initialised from `facebook/wav2vec2-base`" in str(card)


def test_cross_validation_summary_of_a_fold_gives_mean_and_std(tmp_path):
    cv_dir = tmp_path / "cv"
    run = make_run_folder(cv_dir / "fold-00")
    summary = {
        "protocol": {
            "evaluation": "speaker-independent cross-validation",
            "folds": "leave-one-speaker-out",
            "n_folds": 2,
            "std": "sample standard deviation over folds (ddof=1)",
        },
        "labels": LABELS,
        "folds": [
            {"fold": "fold-00", "test_speakers": ["03"], "wa": 0.6, "ua": 0.5, "macro_f1": 0.45},
            {"fold": "fold-01", "test_speakers": ["08"], "wa": 0.8, "ua": 0.7, "macro_f1": 0.65},
        ],
        "mean": {"wa": 0.7, "ua": 0.6, "macro_f1": 0.55},
        "std": {"wa": 0.1414, "ua": 0.1414, "macro_f1": 0.1414},
    }
    (cv_dir / "cv_summary.json").write_text(json.dumps(summary))
    card = build_model_card(run)
    assert _metrics(card)[("test", "recall", True)] == 0.6
    assert "**UA 60.00 ± 14.14, WA 70.00 ± 14.14" in str(card) and "| fold-01 | 08 | 80.00 | 70.00 | 65.00 |" in str(
        card
    )


def test_folder_without_data_report_is_refused(tmp_path):
    run = make_run_folder(tmp_path / "run")
    (run / "data_report.json").unlink()
    with pytest.raises(FileNotFoundError, match="data_report.json"):
        build_model_card(run)


@pytest.mark.slow
def test_training_writes_a_card_whose_results_are_the_runs_own(tiny_run):
    card = ModelCard.load(tiny_run / "README.md")
    test_results = json.loads((tiny_run / "test_results.json").read_text())
    assert _metrics(card)[("test", "recall", False)] == round(test_results["test_ua"], 4)
    assert _metrics(card)[("test", "accuracy", False)] == round(test_results["test_wa"], 4)
    assert "**speaker-independent**" in card.text and "| test | 12 |" in card.text
    assert "![confusion_matrix.png](confusion_matrix.png)" in card.text


def test_card_gives_each_test_score_with_its_bootstrap_interval(tmp_path):
    run = make_run_folder(tmp_path / "run")
    results = json.loads((run / "test_results.json").read_text())
    results.update(
        test_wa_ci_low=0.53, test_wa_ci_high=0.7123, test_ua_ci_low=0.41, test_ua_ci_high=0.5912,
        test_macro_f1_ci_low=0.37, test_macro_f1_ci_high=0.55, test_bootstrap_samples=1000, test_bootstrap_seed=42,
    )  # fmt: skip
    (run / "test_results.json").write_text(json.dumps(results))
    text = str(build_model_card(run))
    assert (
        "| test | 107 | 62.50 % (95 % CI 53.00–71.23) | 50.00 % (95 % CI 41.00–59.12) | 45.67 % (95 % CI 37.00–55.00) |"
        in text
    )
    assert "| validation | 81 | 60.00 % | 55.00 % | 52.00 % |" in text  # no intervals in its file: none shown
    assert "test: 1000 resamples of its 107 clips, seed 42" in text
