import json
import shutil

import numpy as np
import pytest
import soundfile
from conftest import corpus_args
from transformers import Wav2Vec2FeatureExtractor

from hf_ser.arguments import DataArguments
from hf_ser.data.audio import load_audio
from hf_ser.data.augment import build_augmenter
from hf_ser.data.collator import SERDataCollator
from hf_ser.data.dataset import build_corpus
from hf_ser.data.splits import SPEAKER_DEPENDENT, SPEAKER_INDEPENDENT
from hf_ser.data.transforms import attach_transforms, clean_training_view


def test_audiofolder_split_by_speaker(tiny_corpus, tmp_path):
    splits, labels, report = build_corpus(corpus_args(tiny_corpus, validation_speakers=["03"], test_speakers=["04"]))
    assert labels == ["angry", "happy", "neutral", "sad"]
    assert {name: len(split) for name, split in splits.items()} == {"train": 24, "validation": 12, "test": 12}
    assert set(splits["train"]["speaker"]) == {"01", "02"} and set(splits["test"]["speaker"]) == {"04"}
    assert report.protocol == SPEAKER_INDEPENDENT and report.skipped == []
    saved = json.loads(report.save(tmp_path).read_text())
    assert saved["splits"]["test"]["speakers"] == ["04"] and saved["splits"]["train"]["items"] == 24


def test_automatic_speaker_split_is_disjoint_and_seeded(tiny_corpus):
    first, _, _ = build_corpus(corpus_args(tiny_corpus, validation_fraction=0.25, test_fraction=0.25), seed=3)
    again, _, _ = build_corpus(corpus_args(tiny_corpus, validation_fraction=0.25, test_fraction=0.25), seed=3)
    speakers = {name: set(split["speaker"]) for name, split in first.items()}
    assert all(len(s) == 1 for n, s in speakers.items() if n != "train") and len(speakers["train"]) == 2
    assert speakers == {name: set(split["speaker"]) for name, split in again.items()}


def test_speaker_in_two_splits_is_refused(tiny_corpus):
    with pytest.raises(ValueError, match=r"speaker\(s\) \['03'\] are in both train and validation"):
        build_corpus(
            corpus_args(tiny_corpus, train_speakers=["01", "03"], validation_speakers=["03"], test_speakers=["04"])
        )


def test_unknown_speaker_is_named(tiny_corpus):
    with pytest.raises(
        ValueError, match=r"test_speakers \['99'\] are not speakers of this corpus \(its speakers: \['01',"
    ):
        build_corpus(corpus_args(tiny_corpus, validation_speakers=["03"], test_speakers=["99"]))


def test_without_speakers_split_is_stratified_and_labelled_speaker_dependent(tiny_corpus):
    args = DataArguments(dataset="audiofolder", data_dir=str(tiny_corpus), validation_fraction=0.25, test_fraction=0.25)
    splits, labels, report = build_corpus(args)
    assert report.protocol == SPEAKER_DEPENDENT
    assert len(splits["train"]) == 24 and len(splits["validation"]) == 12 and len(splits["test"]) == 12
    assert sorted(np.bincount(splits["test"]["label"])) == [3, 3, 3, 3]


def test_label_selection_and_renaming_report_every_dropped_item(tiny_corpus):
    args = corpus_args(
        tiny_corpus, labels=["joy", "sad"], label_map={"happy": "joy"}, validation_speakers=["03"], test_speakers=["04"]
    )
    splits, labels, report = build_corpus(args)
    assert labels == ["joy", "sad"]
    assert len(report.skipped) == 24 and all("not in the label set" in s["reason"] for s in report.skipped)
    assert sum(len(s) for s in splits.values()) == 24


def test_csv_manifest_with_relative_paths(tiny_corpus, tmp_path):
    corpus = shutil.copytree(tiny_corpus, tmp_path / "corpus")  # the session's corpus stays as it is
    rows = ["path,label,speaker"] + [
        f"{p.relative_to(corpus)},{p.parent.name},{p.name[3:5]}" for p in sorted(corpus.glob("*/*.wav"))
    ]
    manifest = corpus / "manifest.csv"
    manifest.write_text("\n".join(rows))
    splits, labels, _ = build_corpus(
        DataArguments(dataset="csv", manifest=str(manifest), validation_speakers=["03"], test_speakers=["04"])
    )
    assert len(splits["train"]) == 24 and labels == ["angry", "happy", "neutral", "sad"]


def test_decoding_downmixes_and_resamples(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    for name, fmt in (("a.wav", "WAV"), ("a.flac", "FLAC"), ("a.ogg", "OGG")):
        soundfile.write(tmp_path / name, stereo, 44100, format=fmt)
        audio = load_audio(tmp_path / name)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert abs(len(audio) - 16000) <= 1 and 0.45 < np.abs(audio).max() < 0.55


def test_augmentation_changes_training_audio_and_never_evaluation_audio(tiny_corpus):
    args = corpus_args(
        tiny_corpus,
        validation_speakers=["03"],
        test_speakers=["04"],
        max_duration_seconds=10.0,
        augmentations=[{"name": "AddGaussianNoise", "p": 1.0, "min_amplitude": 0.05, "max_amplitude": 0.05}],
    )
    splits, _, _ = build_corpus(args)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True)
    attach_transforms(splits, extractor, args)
    for name in ("train", "validation", "test"):
        split = splits[name]
        raw = load_audio(split.with_format(None)[0]["path"])
        first, second = split[0]["input_values"], split[0]["input_values"]
        if name == "train":
            assert np.abs(first - raw).mean() > 0.02 and not np.allclose(first, second)
        else:
            np.testing.assert_array_equal(first, raw)


def test_training_crop_is_random_and_evaluation_uses_the_whole_clip(tiny_corpus):
    args = corpus_args(tiny_corpus, validation_speakers=["03"], test_speakers=["04"], max_duration_seconds=0.5)
    splits, _, _ = build_corpus(args)
    attach_transforms(splits, Wav2Vec2FeatureExtractor(do_normalize=False), args)
    crops = [splits["train"][0]["input_values"] for _ in range(5)]
    assert all(len(c) == 8000 for c in crops) and len({c[:50].tobytes() for c in crops}) > 1
    assert len(splits["test"][0]["input_values"]) == round(splits["test"].with_format(None)[0]["duration"] * 16000)


def test_training_draws_are_the_same_wherever_the_corpus_lies(tiny_corpus, tmp_path):
    """Crops and augmentation are keyed by a clip's path inside the corpus, not by where the corpus was put: the
    main job on another machine (another home folder) trains on the same draws and prints the same numbers."""
    elsewhere = shutil.copytree(tiny_corpus, tmp_path / "another" / "home" / "corpus")
    noise = [{"name": "AddGaussianNoise", "p": 0.5, "min_amplitude": 0.01, "max_amplitude": 0.05}]
    draws = []
    for corpus in (tiny_corpus, elsewhere):
        args = corpus_args(
            corpus, validation_speakers=["03"], test_speakers=["04"], max_duration_seconds=0.5, augmentations=noise
        )
        splits, _, _ = build_corpus(args)
        extractor = Wav2Vec2FeatureExtractor(do_normalize=False)
        attach_transforms(splits, extractor, args)
        clean = clean_training_view(splits["train"], extractor, args)
        train = [splits["train"][i]["input_values"] for i in range(len(splits["train"]))]
        draws.append((train, [clean[i]["input_values"] for i in range(len(clean))]))
    for first, second in zip(*draws):
        assert len(first) == len(second) == 24
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a, b)


def test_collator_pads_dynamically_with_a_mask():
    collator = SERDataCollator(Wav2Vec2FeatureExtractor(do_normalize=False))
    batch = collator(
        [{"input_values": np.ones(5, np.float32), "label": 1}, {"input_values": np.ones(3, np.float32), "label": 0}]
    )
    assert batch["input_values"].shape == (2, 5)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


def test_seed_augmentations_are_available_and_bad_ones_named():
    compose = build_augmenter(
        [{"name": n, "p": 1.0} for n in ("TimeStretch", "PitchShift", "AddGaussianNoise", "TimeMask")]
    )
    out = compose(samples=np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, sample_rate=16000)
    assert out.shape == (16000,)
    with pytest.raises(ValueError, match=r"augmentations\[0\]: audiomentations has no transform 'Nope'"):
        build_augmenter([{"name": "Nope"}])
    with pytest.raises(ValueError, match=r"augmentations\[0\] \(TimeStretch\)"):
        build_augmenter([{"name": "TimeStretch", "min_speed": 2}])


def test_evaluation_transforms_everywhere_when_not_training(tiny_corpus):
    args = corpus_args(
        tiny_corpus,
        validation_speakers=["03"],
        test_speakers=["04"],
        max_duration_seconds=0.5,
        augmentations=[{"name": "AddGaussianNoise", "p": 1.0, "min_amplitude": 0.05, "max_amplitude": 0.05}],
    )
    splits, _, _ = build_corpus(args)
    attach_transforms(splits, Wav2Vec2FeatureExtractor(do_normalize=False), args, training=False)
    raw = load_audio(splits["train"].with_format(None)[0]["path"])
    np.testing.assert_array_equal(splits["train"][0]["input_values"], raw)  # whole clip, no noise, no crop


def test_jsonl_manifest_needs_no_data_dir(tiny_corpus, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "\n".join(
            json.dumps({"path": str(p), "label": p.parent.name, "speaker": p.name[3:5]})
            for p in sorted(tiny_corpus.glob("*/*.wav"))
        )
    )
    splits, _, _ = build_corpus(
        DataArguments(
            dataset="jsonl",
            manifest=str(manifest),
            allow_absolute_paths=True,
            validation_speakers=["03"],
            test_speakers=["04"],
        )
    )
    assert len(splits["train"]) == 24


def test_a_datasets_dataset_with_embedded_audio_bytes_is_a_source(tiny_corpus, tmp_path):
    """What a Hub dataset id resolves to: parquet files with an Audio column holding the encoded bytes."""
    from datasets import Audio, Dataset

    files = sorted(tiny_corpus.glob("*/*.wav"))
    table = Dataset.from_dict(
        {
            "audio": [{"bytes": p.read_bytes(), "path": p.name} for p in files],
            "emotion": [p.parent.name for p in files],
            "spk": [p.name[3:5] for p in files],
        }
    ).cast_column("audio", Audio(decode=False))
    (tmp_path / "hub").mkdir()
    table.to_parquet(str(tmp_path / "hub" / "train.parquet"))
    args = DataArguments(
        dataset=str(tmp_path / "hub"),
        label_column="emotion",
        speaker_column="spk",
        validation_speakers=["03"],
        test_speakers=["04"],
    )
    splits, labels, report = build_corpus(args)
    assert labels == ["angry", "happy", "neutral", "sad"] and report.skipped == []
    assert {name: len(split) for name, split in splits.items()} == {"train": 24, "validation": 12, "test": 12}
    attach_transforms(splits, Wav2Vec2FeatureExtractor(do_normalize=False), args, training=False)
    first = splits["test"].with_format(None)[0]
    assert first["bytes"] and not (tmp_path / "hub" / first["path"]).exists()  # decoded from bytes, not from a file
    original = tiny_corpus / first["path"].split("_")[1] / first["path"]  # spk04_<emotion>_NN.wav
    np.testing.assert_array_equal(splits["test"][0]["input_values"], load_audio(original))


def test_a_missing_dataset_column_is_named(tiny_corpus, tmp_path):
    from datasets import Dataset

    (tmp_path / "hub").mkdir()
    Dataset.from_dict({"audio": ["x.wav"], "label": ["sad"]}).to_parquet(str(tmp_path / "hub" / "train.parquet"))
    with pytest.raises(KeyError, match="has no column 'spk'"):
        build_corpus(DataArguments(dataset=str(tmp_path / "hub"), speaker_column="spk"))
