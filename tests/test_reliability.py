"""Reliability: bad audio and bad configuration fail clearly or are skipped and reported, the test split never selects
models, runs reproduce from their seed, and nothing unsafe (pickled weights, tokens, escaping paths) gets through."""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import REPO_ROOT
from transformers import Trainer, TrainingArguments, Wav2Vec2FeatureExtractor

from hf_ser.arguments import DataArguments, parse_args
from hf_ser.data.audio import AudioDecodeError
from hf_ser.data.dataset import build_corpus
from hf_ser.data.demo_corpus import synthesize
from hf_ser.data.splits import SPEAKER_DEPENDENT
from hf_ser.data.transforms import attach_transforms
from hf_ser.train import main as train_main
from hf_ser.training.checkpoints import (
    ValidationOnlyCallback,
    check_selection_uses_validation,
    last_complete_checkpoint,
    weights_files,
)

SPEAKERS = r"spk(?P<speaker>\d+)_"
LABELS = ["angry", "happy", "neutral", "sad"]


def _speech(rng, emotion="neutral", seconds=None, sampling_rate=16_000):
    waveform = synthesize(emotion, rng.uniform(100, 220), (600.0, 1500.0), rng, sampling_rate)
    if seconds is not None:
        waveform = np.resize(waveform, int(seconds * sampling_rate))
    return waveform


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    """An audiofolder (4 speakers x 4 emotions x 2 good clips) with every kind of bad or unusual file hf-ser must
    survive, under a root whose name has spaces and non-ASCII characters. Returns (root, expected)."""
    root = tmp_path_factory.mktemp("bad") / "corpus with spaces ü"
    rng = np.random.default_rng(5)
    for speaker in ("01", "02", "03", "04"):
        for emotion in LABELS:
            (root / emotion).mkdir(parents=True, exist_ok=True)
            for index in range(2):
                soundfile.write(
                    root / emotion / f"spk{speaker}_{emotion}_{index:02d}.wav", _speech(rng, emotion), 16_000
                )
    valid = root / "angry" / "spk01_angry_00.wav"
    skipped = {  # file -> what its reason must say
        "angry/spk01_a_zero_bytes.wav": "cannot decode audio",
        "angry/spk01_truncated_header.wav": "cannot decode audio",
        "happy/spk01_random_bytes.wav": "cannot decode audio",
        "happy/spk02_nan.wav": "NaN or infinite",
        "sad/spk02_inf.wav": "NaN or infinite",
        "sad/spk01_ten_ms.wav": "shorter than 0.03 s",
        "surprised/spk01_surprised.wav": "label 'surprised' is not in the label set",
        "angry/spk02_copy of angry_00.wav": "duplicate of ",
    }
    (root / "angry" / "spk01_a_zero_bytes.wav").write_bytes(b"")
    (root / "angry" / "spk01_truncated_header.wav").write_bytes(valid.read_bytes()[:30])
    (root / "happy" / "spk01_random_bytes.wav").write_bytes(rng.bytes(4000))
    nan = _speech(rng, "happy", 1.0)
    nan[100:200] = np.nan
    soundfile.write(root / "happy" / "spk02_nan.wav", nan, 16_000, subtype="FLOAT")
    inf = _speech(rng, "sad", 1.0)
    inf[5] = np.inf
    soundfile.write(root / "sad" / "spk02_inf.wav", inf, 16_000, subtype="FLOAT")
    soundfile.write(root / "sad" / "spk01_ten_ms.wav", _speech(rng, "sad", 0.01), 16_000)
    (root / "surprised").mkdir()
    soundfile.write(root / "surprised" / "spk01_surprised.wav", _speech(rng, "happy"), 16_000)
    shutil.copy(root / "angry" / "spk02_angry_00.wav", root / "angry" / "spk02_copy of angry_00.wav")
    noted = {  # kept, with a note in the report
        "neutral/spk01_silence.wav": "silent",
        "sad/spk03_fifty_ms.wav": "very short (0.050 s",
    }
    soundfile.write(root / "neutral" / "spk01_silence.wav", np.zeros(24_000, np.float32), 16_000)
    soundfile.write(root / "sad" / "spk03_fifty_ms.wav", _speech(rng, "sad", 0.05), 16_000)
    kept = {  # unusual but fine: decoded, downmixed, resampled, cropped
        "neutral/spk01_sixty_seconds.wav": lambda p: soundfile.write(p, _speech(rng, "neutral", 60.0), 16_000),
        "happy/spk02_stereo_48k.wav": lambda p: soundfile.write(
            p, np.stack([_speech(rng, "happy", 2.0, 48_000)] * 2, axis=1), 48_000
        ),
        "sad/spk03_8k.wav": lambda p: soundfile.write(p, _speech(rng, "sad", 2.0, 8_000), 8_000),
        "angry/spk04_pcm24.wav": lambda p: soundfile.write(p, _speech(rng, "angry"), 16_000, subtype="PCM_24"),
        "neutral/spk02_lossless.flac": lambda p: soundfile.write(p, _speech(rng, "neutral"), 16_000, format="FLAC"),
        "happy/spk03_vorbis.ogg": lambda p: soundfile.write(p, _speech(rng, "happy"), 16_000, format="OGG"),
        "sad/spk04_mpeg.mp3": lambda p: soundfile.write(p, _speech(rng, "sad"), 16_000, format="MP3"),
        "happy/spk04_fröhlich mit Leerzeichen.wav": lambda p: soundfile.write(p, _speech(rng, "happy"), 16_000),
    }
    for name, write in kept.items():
        write(root / name)
    return root, {"skipped": skipped, "noted": noted, "kept": kept, "good": 32}


def _bad_args(root, **kwargs):
    return DataArguments(
        dataset="audiofolder",
        data_dir=str(root),
        speaker_pattern=SPEAKERS,
        labels=LABELS,
        validation_speakers=["03"],
        test_speakers=["04"],
        **kwargs,
    )


def _train_argv(root, output_dir, tiny_backbone_config, *extra):
    return [
        "--dataset",
        "audiofolder",
        "--data_dir",
        str(root),
        "--speaker_pattern",
        SPEAKERS,
        "--labels",
        *LABELS,
        "--validation_speakers",
        "03",
        "--test_speakers",
        "04",
        "--backbone_config",
        json.dumps(tiny_backbone_config),
        "--head_hidden_sizes",
        "16",
        "8",
        "--max_duration_seconds",
        "1.0",
        "--output_dir",
        str(output_dir),
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--per_device_eval_batch_size",
        "4",
        "--learning_rate",
        "1e-3",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--seed",
        "3",
        *extra,
    ]


# 1. Bad audio ---------------------------------------------------------------------------------------------------------


def test_every_bad_file_is_skipped_with_its_reason_and_unusual_files_are_kept(bad_corpus, tmp_path):
    root, expected = bad_corpus
    splits, labels, report = build_corpus(_bad_args(root))
    reasons = {str(Path(item["path"]).relative_to(root)): item["reason"] for item in report.skipped}
    assert set(reasons) == set(expected["skipped"])
    for name, reason in expected["skipped"].items():
        assert reason in reasons[name], (name, reasons[name])
    assert reasons["angry/spk02_copy of angry_00.wav"] == f"duplicate of {root / 'angry' / 'spk02_angry_00.wav'}"
    notes = {str(Path(item["path"]).relative_to(root)): item["reason"] for item in report.notes}
    assert {name: reason for name, reason in notes.items() if name in expected["noted"]}.keys() == expected[
        "noted"
    ].keys()
    assert all(expected["noted"][name] in notes[name] for name in expected["noted"])
    used = {str(Path(p).relative_to(root)) for split in splits.values() for p in split["path"]}
    assert set(expected["kept"]) | set(expected["noted"]) <= used
    assert len(used) == expected["good"] + len(expected["kept"]) + len(expected["noted"])
    assert sum(report.splits[name]["items"] for name in report.splits) == len(used)
    durations = dict(zip(splits["train"]["path"], splits["train"]["duration"]))
    assert durations[str(root / "neutral" / "spk01_sixty_seconds.wav")] == pytest.approx(60.0)

    saved = json.loads(report.save(tmp_path).read_text())  # non-ASCII paths survive the JSON round trip
    assert {item["path"] for item in saved["skipped"]} == {str(root / name) for name in expected["skipped"]}


def test_error_policy_stops_at_the_first_bad_file_before_training(bad_corpus, tmp_path, tiny_backbone_config):
    root, _ = bad_corpus
    argv = _train_argv(root, tmp_path / "run", tiny_backbone_config, "--on_bad_audio", "error")
    first_bad = re.escape(str(root / "angry" / "spk01_a_zero_bytes.wav"))
    with pytest.raises(AudioDecodeError, match=rf"^{first_bad}: cannot decode audio .*on_bad_audio: skip"):
        train_main(argv)
    assert not (tmp_path / "run" / "model.safetensors").exists() and not list(tmp_path.glob("run/checkpoint-*"))


@pytest.mark.slow
def test_training_runs_on_the_survivors_and_reports_the_rest(bad_corpus, tmp_path, tiny_backbone_config, caplog):
    root, expected = bad_corpus
    with caplog.at_level(logging.INFO):
        results = train_main(_train_argv(root, tmp_path / "run", tiny_backbone_config))
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert {Path(item["path"]).relative_to(root).as_posix() for item in report["skipped"]} == set(expected["skipped"])
    extra = Counter(re.match(SPEAKERS, Path(name).name)["speaker"] for name in [*expected["kept"], *expected["noted"]])
    assert report["splits"]["train"]["items"] == 2 * 8 + extra["01"] + extra["02"]  # 60 s clip cropped, not dropped
    assert report["splits"]["validation"]["items"] == 8 + extra["03"]
    assert results["test_samples"] == report["splits"]["test"]["items"] == 8 + extra["04"]
    assert 0.0 <= results["test_ua"] <= 1.0 and np.isfinite(results["eval_loss"])
    for name in expected["skipped"]:  # the end-of-data summary names every skipped file
        assert str(root / name) in caplog.text
    assert "silent" in caplog.text and f"skipped {len(expected['skipped'])} item(s)" in caplog.text


def test_a_file_deleted_during_the_run_fails_naming_it(bad_corpus, tmp_path):
    root, _ = bad_corpus
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    splits, _, _ = build_corpus(_bad_args(copy))
    attach_transforms(splits, Wav2Vec2FeatureExtractor(do_normalize=False), _bad_args(copy))
    victim = Path(splits["train"].with_format(None)[0]["path"])
    assert len(splits["train"][0]["input_values"]) > 16_000  # decodes while the file exists
    victim.unlink()
    with pytest.raises(AudioDecodeError, match=rf"^{re.escape(str(victim))}: .*deleted or changed during the run"):
        splits["train"][0]


def test_manifest_rows_without_a_label_are_reported_and_paths_cannot_escape_the_root(bad_corpus, tmp_path):
    root, _ = bad_corpus
    unlabelled = root / "happy" / "spk01_happy_01.wav"
    rows = ["path,label,speaker"] + [
        f"{p.relative_to(root)},{'' if p == unlabelled else p.parent.name},{p.name[3:5]}"
        for p in sorted(root.glob("*/spk*_??.wav"))
        if p.parent.name in LABELS
    ]
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(rows), encoding="utf-8")
    try:
        args = DataArguments(
            dataset="csv", manifest=str(manifest), labels=LABELS, validation_speakers=["03"], test_speakers=["04"]
        )
        splits, _, report = build_corpus(args)
        assert {"path": str(unlabelled), "reason": "missing label"} in report.skipped
        assert str(unlabelled) not in splits["train"]["path"]
        for escaping in ("../outside.wav", str(root / "angry" / "spk01_angry_00.wav")):
            manifest.write_text(f"path,label,speaker\n{escaping},angry,01\n", encoding="utf-8")
            with pytest.raises(
                ValueError, match=r"row 2 path .* points outside the dataset root.*allow_absolute_paths"
            ):
                build_corpus(args)
        manifest.write_text(f"path,label\n{root / 'angry' / 'spk01_angry_00.wav'},angry\n", encoding="utf-8")
        from hf_ser.data.corpora import manifest_records

        assert manifest_records(Path("."), str(manifest), allow_absolute_paths=True)[0]["path"].endswith("angry_00.wav")
    finally:
        manifest.unlink()


# 2. Bad configuration: a clear error naming the key or path, before data decoding or model building -------------------


@pytest.mark.parametrize(
    "line, message",
    [
        ("learning_rat: 1.0e-4", r"unknown recipe key 'learning_rat' \(did you mean 'learning_rate'\?\)"),
        ("learning_rate: fast", r"^recipe .*r\.yaml: argument --learning_rate.*invalid float value: 'fast'"),
        ("per_device_train_batch_size: [1, 2]", r"r\.yaml: recipe key 'per_device_train_batch_size' takes one value"),
        ("on_bad_audio: ignore", r"on_bad_audio='ignore': use `skip` or `error`"),
    ],
)
def test_bad_recipe_values_name_the_key_and_the_file(tmp_path, line, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        parse_args([str(recipe)])


def test_a_command_line_override_replaces_a_bad_recipe_value_and_a_bad_override_is_blamed(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rate: fast\n")
    assert parse_args([str(recipe), "--learning_rate", "3e-4"])[2].learning_rate == 3e-4
    with pytest.raises(ValueError, match=r"^command line: argument --num_train_epochs.*invalid float value: 'x'"):
        parse_args(["--num_train_epochs", "x"])


def test_missing_data_paths_are_named_before_anything_is_decoded(tmp_path, tiny_backbone_config):
    missing = tmp_path / "no such corpus"
    argv = _train_argv(missing, tmp_path / "run", tiny_backbone_config)
    with pytest.raises(FileNotFoundError, match=re.escape(f"data_dir {str(missing)!r} for dataset 'audiofolder'")):
        train_main(argv)
    with pytest.raises(FileNotFoundError, match=re.escape(f"manifest {str(missing / 'm.csv')!r} does not exist")):
        build_corpus(DataArguments(dataset="csv", manifest=str(missing / "m.csv")))
    assert not (tmp_path / "run" / "data_report.json").exists()


def test_labels_without_items_are_named(tiny_corpus):
    def args(**kwargs):
        return DataArguments(dataset="audiofolder", data_dir=str(tiny_corpus), speaker_pattern=SPEAKERS, **kwargs)

    with pytest.raises(ValueError, match=r"label\(s\) \['calm'\] have no items in the data .*'angry', 'happy'"):
        build_corpus(args(labels=["angry", "calm"]))
    with pytest.raises(ValueError, match=r"label\(s\) \['joy', 'rage'\] have no items"):
        build_corpus(args(labels=["joy", "rage"]))
    with pytest.raises(ValueError, match=r"label\(s\) \['joy'\] have no items.*label_map.*'hapy': 'joy'"):
        build_corpus(args(labels=["joy", "sad"], label_map={"hapy": "joy"}))  # a typo in the map covers nothing


@pytest.mark.slow
def test_a_missing_accelerate_config_is_named_by_accelerate_before_training(tiny_train_argv, tmp_path):
    missing = tmp_path / "missing.yaml"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(missing),
        str(REPO_ROOT / "hf_ser" / "train.py"),
        *tiny_train_argv,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode != 0
    assert f"The passed configuration file `{missing}` does not exist" in result.stderr
    assert not (tmp_path / "run").exists()


# 4. Determinism -------------------------------------------------------------------------------------------------------


def test_training_crops_and_augmentation_are_keyed_by_seed_epoch_and_file(tiny_corpus):
    args = DataArguments(
        dataset="audiofolder",
        data_dir=str(tiny_corpus),
        speaker_pattern=SPEAKERS,
        validation_speakers=["03"],
        test_speakers=["04"],
        max_duration_seconds=0.5,
        augmentations=[{"name": "AddGaussianNoise", "p": 0.5}],
    )
    splits, _, _ = build_corpus(args)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=False)

    def first_epochs(seed):
        attach_transforms(splits, extractor, args, seed=seed)
        transform = splits["train"].format["format_kwargs"]["transform"]
        crops = []
        for epoch in (0, 1):
            transform.set_epoch(epoch)
            crops.append(np.concatenate([splits["train"][i]["input_values"] for i in range(4)]))
        return crops

    epoch0, epoch1 = first_epochs(seed=1)
    again0, again1 = first_epochs(seed=1)
    other0, _ = first_epochs(seed=2)
    np.testing.assert_array_equal(epoch0, again0)  # a fresh process (a resume) draws the same crops and noise
    np.testing.assert_array_equal(epoch1, again1)
    assert not np.array_equal(epoch0, epoch1) and not np.array_equal(epoch0, other0)


@pytest.mark.slow
def test_another_seed_gives_other_metrics_and_the_same_seed_the_same(tiny_train_argv, tmp_path):
    runs = {
        name: train_main(
            tiny_train_argv + ["--num_train_epochs", "1", "--seed", seed, "--output_dir", str(tmp_path / name)]
        )
        for name, seed in (("first", "11"), ("again", "11"), ("other", "12"))
    }
    strip = lambda metrics: {k: v for k, v in metrics.items() if "runtime" not in k and "per_second" not in k}  # noqa: E731
    assert strip(runs["first"]) == strip(runs["again"])
    assert runs["first"]["eval_loss"] != runs["other"]["eval_loss"]


# 5. Protocol guards ---------------------------------------------------------------------------------------------------


def test_leaking_speakers_are_refused_unless_the_run_is_declared_speaker_dependent(tiny_corpus, tmp_path):
    def args(**kwargs):
        return DataArguments(
            dataset="audiofolder",
            data_dir=str(tiny_corpus),
            speaker_pattern=SPEAKERS,
            train_speakers=["01", "02", "04"],
            validation_speakers=["03"],
            test_speakers=["04"],
            **kwargs,
        )

    with pytest.raises(ValueError, match=r"speaker\(s\) \['04'\] are in both train and test.*speaker_dependent: true"):
        build_corpus(args())
    _, _, report = build_corpus(args(speaker_dependent=True))
    assert json.loads(report.save(tmp_path).read_text())["protocol"] == SPEAKER_DEPENDENT == "speaker-dependent"


def test_the_test_split_can_neither_select_checkpoints_nor_be_evaluated_during_training(
    tiny_corpus, tmp_path, tiny_backbone_config
):
    from hf_ser.arguments import ModelArguments
    from hf_ser.data.collator import SERDataCollator
    from hf_ser.evaluation.metrics import compute_metrics
    from hf_ser.training.model_building import build_model

    with pytest.raises(ValueError, match="test split never selects"):
        parse_args(["--metric_for_best_model", "test_ua"])
    data_args = DataArguments(
        dataset="audiofolder",
        data_dir=str(tiny_corpus),
        speaker_pattern=SPEAKERS,
        validation_speakers=["03"],
        test_speakers=["04"],
    )
    splits, labels, _ = build_corpus(data_args)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    attach_transforms(splits, extractor, data_args)
    model = build_model(ModelArguments(backbone_config=tiny_backbone_config, head_hidden_sizes=[8]), labels)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(str(tmp_path), report_to="none", remove_unused_columns=False),
        eval_dataset=splits["test"],
        data_collator=SERDataCollator(extractor),
        compute_metrics=compute_metrics,
        callbacks=[ValidationOnlyCallback(splits["test"])],
    )
    with pytest.raises(ValueError, match=r"eval_dataset must be splits\['validation'\]"):
        check_selection_uses_validation(trainer, splits)
    with pytest.raises(RuntimeError, match="evaluated the test split during training"):
        trainer.evaluate()
    trainer.eval_dataset = splits["validation"]
    check_selection_uses_validation(trainer, splits)
    assert 0.0 <= trainer.evaluate()["eval_ua"] <= 1.0


# 6. Safety ------------------------------------------------------------------------------------------------------------


def test_incomplete_checkpoints_are_never_resumed_from(tmp_path):
    for step, files in (
        (2, ["model.safetensors", "trainer_state.json"]),
        (4, ["model.safetensors"]),
        (6, ["trainer_state.json"]),
    ):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("{}")
    (tmp_path / "checkpoint-8").mkdir()
    (tmp_path / "checkpoint-8" / "model.safetensors").write_text("x")
    (tmp_path / "checkpoint-8" / "trainer_state.json").write_text('{"log_hist')  # killed while writing the state
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert last_complete_checkpoint(tmp_path / "absent") is None


def test_a_checkpoint_of_two_processes_is_complete_only_with_both_ranks_rng_state(tmp_path):
    """Rank 0 writes the trainer state without waiting for rank 1's RNG file; resuming there would reseed rank 1."""
    for step, ranks in ((2, (0, 1)), (4, (0,))):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_text("x")
        (folder / "trainer_state.json").write_text("{}")
        for rank in ranks:
            (folder / f"rng_state_{rank}.pth").write_text("x")
    assert last_complete_checkpoint(tmp_path, processes=2) == str(tmp_path / "checkpoint-2")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")  # one process reads no rank files
    single = tmp_path / "single-process" / "checkpoint-6"  # written by one process: rng_state.pth, no rank files
    single.mkdir(parents=True)
    for name in ("model.safetensors", "trainer_state.json", "rng_state.pth"):
        (single / name).write_text("{}")
    assert last_complete_checkpoint(single.parent, processes=2) == str(single)


def test_pickled_weights_are_refused_when_loading_an_hf_ser_checkpoint(tmp_path, tiny_backbone_config):
    from hf_ser.arguments import ModelArguments
    from hf_ser.training.model_building import build_model

    model = build_model(ModelArguments(backbone_config=tiny_backbone_config, head_hidden_sizes=[8]), ["a", "b"])
    model.save_pretrained(tmp_path)
    assert weights_files(tmp_path) == [] and (tmp_path / "model.safetensors").is_file()
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    assert weights_files(tmp_path) == [tmp_path / "pytorch_model.bin"]
    with pytest.raises(OSError, match="no file named model.safetensors"):
        build_model(ModelArguments(model_name_or_path=str(tmp_path)), ["a", "b"])


def test_hf_ser_never_turns_on_remote_code_itself():
    """No call in hf_ser passes trust_remote_code other than False (instructions in model-card strings do not count:
    the calls are read from the syntax tree, not from the text). hf_ser/hub/templates/ is exempt: those files are what a
    user runs where hf-ser is absent (the Space app loads the model's own code by design; `hf-ser demo` runs the same
    page on hf-ser's loader instead)."""
    import ast

    templates = REPO_ROOT / "hf_ser" / "hub" / "templates"
    turned_on = []
    for path in (REPO_ROOT / "hf_ser").rglob("*.py"):
        if path.is_relative_to(templates):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    is_false = isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                    if keyword.arg == "trust_remote_code" and not is_false:
                        turned_on.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert turned_on == []


@pytest.mark.slow
def test_tokens_never_reach_files_or_logs(tiny_train_argv, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", "hf_envTOKENshouldNEVERbeWritten")
    argv = tiny_train_argv + [
        "--hub_token",
        "hf_argTOKENshouldNEVERbeWritten",
        "--max_steps",
        "1",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        "--load_best_model_at_end",
        "false",
        "--log_level",
        "info",
    ]
    with caplog.at_level(logging.INFO):
        train_main(argv)
    assert os.environ["HF_TOKEN"] == "hf_argTOKENshouldNEVERbeWritten"  # where huggingface_hub reads it for a push
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in written) and any(p.suffix == ".json" for p in written)
    for path in written:
        assert b"TOKENshouldNEVER" not in path.read_bytes(), path
    assert "TOKENshouldNEVER" not in caplog.text
