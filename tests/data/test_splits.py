"""The automatic speaker split keeps every class in every split where the speakers allow it, and says so when they
do not."""

import json

import numpy as np
import soundfile
from conftest import TINY_LABELS, corpus_args
from run_folders import make_run_folder

from hf_ser.data.dataset import build_corpus
from hf_ser.hub.model_card import build_model_card

SIX_SPEAKERS = ["01", "02", "03", "04", "05", "06"]


def write_corpus(root, classes_of: dict, per_class: int = 2):
    """An audiofolder (`<label>/spkXX_N.wav`) where each speaker speaks only the classes listed for it; every clip
    is different noise, so none is skipped as a duplicate."""
    rng = np.random.default_rng(0)
    for speaker, labels in classes_of.items():
        for label in labels:
            (root / label).mkdir(parents=True, exist_ok=True)
            for n in range(per_class):
                clip = 0.1 * rng.standard_normal(9600).astype(np.float32)
                soundfile.write(root / label / f"spk{speaker}_{n}.wav", clip, 16000)
    return root


def automatic(root, **kwargs):
    return corpus_args(root, validation_fraction=1 / 6, test_fraction=1 / 6, **kwargs)


def test_automatic_split_puts_every_class_in_validation_and_test_where_the_label_blind_split_did_not(tmp_path):
    # Speakers 05 and 06 speak only angry and happy; seed 8's plain shuffle (the old, label-blind split) makes them
    # the test and validation speakers, leaving neutral and sad out of both.
    classes_of = {s: TINY_LABELS for s in SIX_SPEAKERS[:4]} | {"05": ["angry", "happy"], "06": ["angry", "happy"]}
    root = write_corpus(tmp_path / "corpus", classes_of)
    splits, labels, report = build_corpus(automatic(root), seed=8)
    assert {name: sorted(set(split["label"])) for name, split in splits.items()} == {
        "train": [0, 1, 2, 3],
        "validation": [0, 1, 2, 3],
        "test": [0, 1, 2, 3],
    }
    assert all(split["absent_labels"] == [] for split in report.splits.values())
    assert not {"05", "06"} & (set(splits["validation"]["speaker"]) | set(splits["test"]["speaker"]))
    again, _, _ = build_corpus(automatic(root), seed=8)
    assert {n: sorted(set(s["speaker"])) for n, s in again.items()} == {
        n: r["speakers"] for n, r in report.splits.items()
    }
    assert "chosen to put every class in every split" in report.split_rule


def test_a_class_the_speakers_cannot_spread_is_named_in_the_report_the_console_and_the_card(tmp_path, caplog):
    # Only speaker 01 ever sounds sad: it goes to training, and validation and test cannot score sad.
    classes_of = {"01": TINY_LABELS} | {s: ["angry", "happy", "neutral"] for s in SIX_SPEAKERS[1:]}
    root = write_corpus(tmp_path / "corpus", classes_of)
    splits, labels, report = build_corpus(automatic(root), seed=8)
    assert "01" in report.splits["train"]["speakers"]
    assert [report.splits[name]["absent_labels"] for name in ("train", "validation", "test")] == [[], ["sad"], ["sad"]]
    assert "The test split has no item of sad: its UA and macro-F1 average over the 3 classes present" in caplog.text
    assert "The validation split has no item of sad" in report.split_summary()

    run = make_run_folder(tmp_path / "run", dataset="audiofolder", labels=TINY_LABELS)
    report.save(run)
    assert json.loads((run / "data_report.json").read_text())["splits"]["test"]["absent_labels"] == ["sad"]
    (run / "test_results.json").write_text(
        json.dumps({"test_wa": 0.5, "test_ua": 1 / 3, "test_macro_f1": 0.3, "test_absent_classes": ["sad"]})
    )
    card = str(build_model_card(run))
    assert "**The test split has no item of sad: its UA and macro-F1 average over the 3 classes present" in card
    assert "| 33.33 % (over 3 of 4 classes; no sad) |" in card
