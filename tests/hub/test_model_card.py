import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import REPO_ROOT, run_without_hf_ser
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from run_folders import LABELS, make_run_folder

from hf_ser.data.audio import load_audio
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


PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _python_blocks(markdown: str, model_ref: str, model_dir: Path, audio: Path) -> list[str]:
    """The Python blocks of a Markdown text as a user would copy them, with only the model id and the audio file
    name replaced by a local run folder and a real file."""
    return [
        block.replace(f'"{model_ref}"', f'"{model_dir}"').replace('"speech.wav"', f'"{audio}"')
        for block in PYTHON_BLOCK.findall(markdown)
    ]


def _predictions(stdout: str) -> list[list[dict]]:
    return [ast.literal_eval(line) for line in stdout.splitlines() if line.startswith("[{")]


@pytest.mark.slow
def test_usage_snippets_of_the_card_readme_and_quickstart_run_as_written_on_a_44k_stereo_file(
    tiny_run, tiny_corpus, tmp_path
):
    clip = load_audio(next((tiny_corpus / "angry").glob("*.wav")), sampling_rate=44_100)
    audio = tmp_path / "speech 44k stereo.wav"
    soundfile.write(audio, np.stack([clip, 0.5 * clip], axis=1), 44_100)
    assert soundfile.info(audio).channels == 2 and soundfile.info(audio).samplerate == 44_100

    card = _python_blocks(str(build_model_card(tiny_run, repo_id="me/tiny-ser")), "me/tiny-ser", tiny_run, audio)
    with_hf_ser = [block for block in card if "import hf_ser" in block]
    without_hf_ser = [block for block in card if "import hf_ser" not in block]
    assert len(with_hf_ser) == 2 and len(without_hf_ser) == 1 and "trust_remote_code=True" in without_hf_ser[0]
    docs = [
        block
        for name, model_ref in (("README.md", "outputs/demo"), ("docs/quickstart.md", "outputs/emodb"))
        for block in _python_blocks((REPO_ROOT / name).read_text(), model_ref, tiny_run, audio)
        if 'pipeline("audio-classification"' in block
    ]
    assert len(docs) == 2

    result = subprocess.run(
        [sys.executable, "-c", "\n".join(docs + with_hf_ser)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    readme, quickstart, card_with_hf_ser = _predictions(result.stdout)
    card_without_hf_ser = ast.literal_eval(run_without_hf_ser(without_hf_ser[0], cwd=tmp_path))
    labels = json.loads((tiny_run / "config.json").read_text())["id2label"].values()
    for predictions in (readme, quickstart, card_with_hf_ser, card_without_hf_ser):
        assert sorted(p["label"] for p in predictions) == sorted(labels)
        assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-4)
    # hf_ser.load_audio and the card's soundfile + soxr lines decode alike: the same scores everywhere
    expected = {p["label"]: p["score"] for p in readme}
    for predictions in (quickstart, card_with_hf_ser, card_without_hf_ser):
        assert {p["label"]: p["score"] for p in predictions} == pytest.approx(expected, abs=1e-5)
