"""Specification of the corpus adapters (hf_ser/corpora.py) on generated look-alikes of each corpus's official layout.

Every tree is written with soundfile at the corpus's own sampling rates (and in stereo where noted); each file holds
different noise, so no two files are duplicates of each other.
"""

import dataclasses
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import EMODB_DIR, requires_emodb
from dimensional_look_alikes import iemocap_values, write_iemocap, write_msp_podcast

from hf_ser.arguments import DataArguments
from hf_ser.data.corpora import CORPORA, load_records
from hf_ser.data.dataset import build_corpus, check_corpus

_seed = iter(range(10**6))


def write_wav(path: Path, rate: int = 16000, seconds: float = 0.2, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(next(_seed)).standard_normal((round(seconds * rate), channels)) * 0.1
    soundfile.write(path, noise if channels > 1 else noise[:, 0], rate)
    return path


def by_name(records: list[dict]) -> dict[str, dict]:
    return {Path(record["path"]).name: record for record in records}


def test_every_corpus_is_registered():
    assert {"emodb", "ravdess", "iemocap", "crema_d", "msp_podcast", "audiofolder", "csv", "jsonl"} <= set(CORPORA)
    with pytest.raises(KeyError, match=r"dataset 'ravdes' is not a local corpus"):
        load_records("ravdes", "somewhere")


# ---------------------------------------------------------------------------------------------------------- EmoDB
def test_emodb_names_give_emotion_and_speaker(tmp_path):
    for name in ("03a01Fa", "03a01Wa", "16b10Tb", "09a05Nc"):
        write_wav(tmp_path / "emodb" / "wav" / f"{name}.wav")
    records = by_name(load_records("emodb", str(tmp_path / "emodb")))
    assert {name: (r["label"], r["speaker"]) for name, r in records.items()} == {
        "03a01Fa.wav": ("happiness", "03"),
        "03a01Wa.wav": ("anger", "03"),
        "16b10Tb.wav": ("sadness", "16"),
        "09a05Nc.wav": ("neutral", "09"),
    }


def test_emodb_foreign_file_name_is_a_reported_skip_and_no_fitting_name_an_error(tmp_path):
    write_wav(tmp_path / "wav" / "03a01Fa.wav")
    write_wav(tmp_path / "wav" / "03a01Xa.wav")
    records = by_name(load_records("emodb", str(tmp_path)))
    assert records["03a01Fa.wav"]["label"] == "happiness"
    assert records["03a01Xa.wav"]["skip_reason"] == "not a file name of the EmoDB scheme (expected e.g. 03a01Fa.wav)"
    (tmp_path / "wav" / "03a01Fa.wav").unlink()
    with pytest.raises(ValueError, match=r"the EmoDB naming scheme matches no file name under .*wav \(e\.g\. '03a01Xa"):
        load_records("emodb", str(tmp_path))


@requires_emodb()
def test_real_emodb_has_the_counts_of_its_readme():
    records = load_records("emodb", str(EMODB_DIR))
    assert len(records) == 535
    assert Counter(r["label"] for r in records) == {
        "anger": 127,
        "boredom": 81,
        "disgust": 46,
        "fear": 69,
        "happiness": 71,
        "sadness": 62,
        "neutral": 79,
    }
    assert Counter(r["speaker"] for r in records) == {
        "03": 49,
        "08": 58,
        "09": 43,
        "10": 38,
        "11": 55,
        "12": 35,
        "13": 61,
        "14": 69,
        "15": 56,
        "16": 71,
    }


# -------------------------------------------------------------------------------------------------------- RAVDESS
@pytest.fixture
def ravdess_tree(tmp_path) -> Path:
    """Two actors' speech (48 kHz like the release; actor 02 in stereo) and one actor's song files beside them."""
    root = tmp_path / "ravdess"
    for actor, channels in (("01", 1), ("02", 2)):
        for emotion in ("01", "02", "03", "04", "05", "06", "07", "08"):
            for statement in ("01", "02"):
                name = f"03-01-{emotion}-01-{statement}-01-{actor}.wav"
                write_wav(root / "Audio_Speech_Actors_01-24" / f"Actor_{actor}" / name, 48000, channels=channels)
    for emotion in ("01", "03"):
        write_wav(root / "Audio_Song_Actors_01-24" / "Actor_01" / f"03-02-{emotion}-01-01-01-01.wav", 44100)
    return root


def test_ravdess_records_speech_with_actor_as_speaker_and_skip_songs(ravdess_tree):
    records = load_records("ravdess", str(ravdess_tree))
    speech = [r for r in records if r["label"] is not None]
    songs = [r for r in records if r["label"] is None]
    assert len(speech) == 32 and len(songs) == 2
    assert all("RAVDESS song" in r["skip_reason"] for r in songs)
    assert Counter(r["label"] for r in speech) == {
        name: 4 for name in ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
    }
    assert Counter(r["speaker"] for r in speech) == {"01": 16, "02": 16}
    assert by_name(records)["03-01-05-01-02-01-02.wav"]["label"] == "angry"


def test_ravdess_calm_merges_into_neutral_and_songs_are_reported(ravdess_tree):
    args = DataArguments(
        dataset="ravdess",
        data_dir=str(ravdess_tree),
        label_map={"calm": "neutral"},
        speaker_dependent=True,
        validation_fraction=0.25,
        test_fraction=0.25,
    )
    splits, labels, report = build_corpus(args)
    assert labels == ["angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised"]
    assert sum(len(split) for split in splits.values()) == 32
    assert sum(np.asarray(splits[name]["label"]).tolist().count(labels.index("neutral")) for name in splits) == 8
    assert [s["reason"] for s in report.skipped] == [
        "RAVDESS song (vocal channel 02); hf-ser uses the speech recordings"
    ] * 2
    # 48 kHz stereo was decoded to 16 kHz mono: 0.2 s each
    assert np.allclose(np.concatenate([split["duration"] for split in splits.values()]), 0.2, atol=1e-3)


def test_ravdess_foreign_file_name_is_named(tmp_path):
    write_wav(tmp_path / "Actor_01" / "03-01-09-01-01-01-01.wav")
    with pytest.raises(ValueError, match=r"03-01-09-01-01-01-01\.wav: not a RAVDESS file name"):
        load_records("ravdess", str(tmp_path))


# -------------------------------------------------------------------------------------------------------- IEMOCAP
EVALUATION_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def evaluation_block(start: float, utterance: str, code: str, evaluators: tuple = ("C-E2:\tNeutral;",)) -> str:
    """One utterance of an EmoEvaluation file, with the evaluators' lines that follow it in the release: categorical
    (`evaluators`, each followed by its comment) then dimensional."""
    categorical = "".join(f"{line}\t()\n" for line in evaluators)
    return (
        f"[{start:.4f} - {start + 2:.4f}]\t{utterance}\t{code}\t[2.5000, 3.0000, 3.0000]\n"
        f"{categorical}A-E3:\tval 3; act 2; dom  2;\t()\n\n"
    )


@pytest.fixture
def iemocap_tree(tmp_path) -> Path:
    """Sessions 1 and 5: every label code, an `xxx` utterance, a wav without a line, a line without a wav, a macOS
    resource fork. Wavs at 16 kHz as released, one dialog at 22.05 kHz stereo to check decoding."""
    root = tmp_path / "IEMOCAP_full_release"
    dialogs = {
        "Session1": {
            "Ses01F_impro01": ["neu", "hap", "exc", "sad", "ang", "xxx"],
            "Ses01M_script01_1": ["fru", "sur", "fea", "dis", "oth", "neu"],
        },
        "Session5": {"Ses05F_impro03": ["exc", "neu", "ang", "sad"]},
    }
    for session, session_dialogs in dialogs.items():
        evaluation_dir = root / session / "dialog" / "EmoEvaluation"
        evaluation_dir.mkdir(parents=True)
        for dialog, codes in session_dialogs.items():
            text = EVALUATION_HEADER
            for index, code in enumerate(codes):
                speaker_gender = "FM"[index % 2]  # turns alternate between the two actors
                utterance = f"{dialog}_{speaker_gender}{index:03d}"
                text += evaluation_block(2.0 * index, utterance, code)
                rate, channels = (22050, 2) if dialog == "Ses05F_impro03" else (16000, 1)
                write_wav(root / session / "sentences" / "wav" / dialog / f"{utterance}.wav", rate, channels=channels)
            (evaluation_dir / f"{dialog}.txt").write_text(text)
    (evaluation_dir / "Ses05F_impro03.txt").write_text(
        (evaluation_dir / "Ses05F_impro03.txt").read_text() + evaluation_block(20.0, "Ses05F_impro03_M009", "hap")
    )
    write_wav(root / "Session5" / "sentences" / "wav" / "Ses05F_impro03" / "Ses05F_impro03_F010.wav")
    (root / "Session5" / "sentences" / "wav" / "Ses05F_impro03" / "._Ses05F_impro03_F000.wav").write_bytes(b"\0" * 64)
    return root


def test_iemocap_labels_come_from_emoevaluation_and_speaker_from_the_utterance(iemocap_tree):
    records = by_name(load_records("iemocap", str(iemocap_tree)))
    labelled = {name: (r["label"], r["speaker"]) for name, r in records.items() if r["label"] is not None}
    assert labelled["Ses01F_impro01_F000.wav"] == ("neutral", "Ses01F")
    assert labelled["Ses01F_impro01_M001.wav"] == ("happy", "Ses01M")  # markers on F, spoken by M
    assert labelled["Ses01M_script01_1_F000.wav"] == ("frustrated", "Ses01F")
    assert sorted(label for label, _ in labelled.values()) == sorted(
        [
            "neutral",
            "happy",
            "excited",
            "sad",
            "angry",
            "frustrated",
            "surprised",
            "fearful",
            "disgusted",
            "other",
            "neutral",
            "excited",
            "neutral",
            "angry",
            "sad",
        ]
    )
    assert Counter(speaker for _, speaker in labelled.values()) == {"Ses01F": 6, "Ses01M": 5, "Ses05F": 2, "Ses05M": 2}
    skipped = {name: r["skip_reason"] for name, r in records.items() if r["label"] is None}
    assert skipped["Ses01F_impro01_M005.wav"] == "no majority emotion (xxx) in Ses01F_impro01.txt"
    assert skipped["Ses05F_impro03_F010.wav"].startswith("no line for it in")
    assert skipped["Ses05F_impro03_M009.wav"] == "listed in Ses05F_impro03.txt but the wav file is missing"
    assert skipped["._Ses05F_impro03_F000.wav"] == "not an IEMOCAP utterance name"
    assert len(skipped) == 4


def test_iemocap_standard_four_class_set_with_session_five_as_test(iemocap_tree):
    args = DataArguments(
        dataset="iemocap",
        data_dir=str(iemocap_tree),
        labels=["neutral", "happy", "sad", "angry"],
        label_map={"excited": "happy"},
        validation_speakers=["Ses01M"],
        test_speakers=["Ses05F", "Ses05M"],
    )
    splits, labels, report = build_corpus(args)
    assert labels == ["neutral", "happy", "sad", "angry"]
    counts = {name: Counter(labels[i] for i in split["label"]) for name, split in splits.items()}
    assert counts == {
        "train": {"neutral": 1, "happy": 1, "angry": 1},  # Ses01F; excited counted as happy
        "validation": {"neutral": 1, "happy": 1, "sad": 1},
        "test": {"happy": 1, "neutral": 1, "angry": 1, "sad": 1},
    }
    out_of_set = [item for item in report.skipped if "is not in the label set" in item["reason"]]
    assert sorted(item["reason"].split("'")[1] for item in out_of_set) == [
        "disgusted",
        "fearful",
        "frustrated",
        "other",
        "surprised",
    ]
    assert len(report.skipped) == 4 + 5  # xxx, no line, no wav, resource fork + the five labels outside the set


def test_iemocap_unknown_label_code_names_the_file_and_line(tmp_path):
    evaluation_dir = tmp_path / "Session2" / "dialog" / "EmoEvaluation"
    evaluation_dir.mkdir(parents=True)
    (evaluation_dir / "Ses02F_impro01.txt").write_text(
        EVALUATION_HEADER + evaluation_block(0, "Ses02F_impro01_F000", "joy")
    )
    with pytest.raises(ValueError, match=r"Ses02F_impro01\.txt:3: unknown IEMOCAP label code 'joy'"):
        load_records("iemocap", str(tmp_path))


# What three evaluators (and the actor, `C-F1`, whose self-assessment is no vote) ticked for four utterances.
IEMOCAP_VOTES = {
    "Ses01F_impro01_F000": (
        "neu",
        ("C-E1:\tNeutral;", "C-E2:\tNeutral; Frustration;", "C-E3:\tNeutral state;", "C-F1:\tAnger;"),
    ),
    "Ses01F_impro01_M001": ("ang", ("C-E1:\tAnger;", "C-E2:\tFrustration; Anger;", "C-E4:\tOther:curious;")),
    "Ses01F_impro01_F002": ("exc", ("C-E1:\tExcited;", "C-E2:\tHappiness;", "C-E3:\tExcited; Sadness;")),
    "Ses01F_impro01_M003": ("sad", ()),  # no evaluator line: no votes
}


def write_iemocap_votes_tree(root: Path, blocks: dict = IEMOCAP_VOTES) -> Path:
    """One dialog of Session1 whose utterances have the evaluator lines of `blocks` (utterance -> (code, lines))."""
    evaluation_dir = root / "Session1" / "dialog" / "EmoEvaluation"
    evaluation_dir.mkdir(parents=True, exist_ok=True)
    text = EVALUATION_HEADER
    for index, (utterance, (code, evaluators)) in enumerate(blocks.items()):
        text += evaluation_block(2.0 * index, utterance, code, evaluators)
        write_wav(root / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / f"{utterance}.wav")
    (evaluation_dir / "Ses01F_impro01.txt").write_text(text)
    return root


def test_iemocap_evaluator_lines_are_votes_one_per_ticked_category(tmp_path):
    root = write_iemocap_votes_tree(tmp_path / "IEMOCAP_full_release")
    records = by_name(load_records("iemocap", str(root), with_votes=True))
    assert {name: r["votes"] for name, r in records.items()} == {
        "Ses01F_impro01_F000.wav": {"neutral": 3, "frustrated": 1},
        "Ses01F_impro01_M001.wav": {"angry": 2, "frustrated": 1, "other": 1},
        "Ses01F_impro01_F002.wav": {"excited": 2, "happy": 1, "sad": 1},
        "Ses01F_impro01_M003.wav": {},
    }
    assert all("votes" not in r for r in load_records("iemocap", str(root)))  # hard labels: lines not read


def test_iemocap_soft_targets_and_the_vote_report(tmp_path):
    root = write_iemocap_votes_tree(tmp_path / "IEMOCAP_full_release")
    args = DataArguments(
        dataset="iemocap",
        data_dir=str(root),
        labels=["neutral", "happy", "sad", "angry"],
        label_map={"excited": "happy"},
        label_targets="soft",
        speaker_dependent=True,
        validation_fraction=0.0,
        test_fraction=0.0,
    )
    corpus = check_corpus(args)
    rows = corpus.dataset.to_list()
    targets = {Path(row["path"]).stem: row["label_distribution"] for row in rows}
    assert targets == {
        "Ses01F_impro01_F000": [1.0, 0.0, 0.0, 0.0],  # the frustrated vote is outside the labels
        "Ses01F_impro01_M001": [0.0, 0.0, 0.0, 1.0],
        "Ses01F_impro01_F002": [0.0, 0.75, 0.25, 0.0],  # excited -> happy
        "Ses01F_impro01_M003": [0.0, 0.0, 1.0, 0.0],  # no votes: its hard label
    }
    assert {Path(row["path"]).stem: corpus.label_names[row["label"]] for row in rows}["Ses01F_impro01_F002"] == "happy"
    assert corpus.report.label_votes == {
        "label_targets": "soft",
        "items_with_votes": 3,
        "one_hot_without_votes": 1,
        "one_hot_votes_outside_labels": 0,
        "votes_outside_labels": {"frustrated": 2, "other": 1},
    }
    hard = check_corpus(dataclasses.replace(args, label_targets="hard"))
    assert "label_distribution" not in hard.dataset.column_names and hard.report.label_votes == {}


@pytest.mark.parametrize(
    "evaluator, message",
    [
        ("C-E1:\tJoy;", r"Ses01F_impro01\.txt:4: unknown IEMOCAP evaluator category 'Joy'"),
        ("C-E1:\t", r"Ses01F_impro01\.txt:4: evaluator line 'C-E1:\\t\\t\(\)' names no category"),
    ],
)
def test_iemocap_bad_evaluator_line_names_the_file_and_line_only_when_votes_are_read(tmp_path, evaluator, message):
    root = write_iemocap_votes_tree(tmp_path / "IEMOCAP_full_release", {"Ses01F_impro01_F000": ("neu", (evaluator,))})
    with pytest.raises(ValueError, match=message):
        load_records("iemocap", str(root), with_votes=True)
    assert load_records("iemocap", str(root))[0]["label"] == "neutral"  # the hard default does not read them


def test_iemocap_without_sessions_says_what_it_expects(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Session1..Session5 folders"):
        load_records("iemocap", str(tmp_path))


# -------------------------------------------------------------------------------------------------------- CREMA-D
def test_crema_d_names_give_emotion_and_actor(tmp_path):
    names = [
        "1001_DFA_ANG_XX",
        "1001_IEO_HAP_HI",
        "1002_TIE_NEU_XX",
        "1091_WSI_SAD_LO",
        "1091_MTI_FEA_MD",
        "1050_ITH_DIS_XX",
    ]
    for index, name in enumerate(names):
        write_wav(tmp_path / "AudioWAV" / f"{name}.wav", rate=(16000, 44100)[index % 2], channels=1 + index % 2)
    records = by_name(load_records("crema_d", str(tmp_path)))
    assert {name: (r["label"], r["speaker"]) for name, r in records.items()} == {
        "1001_DFA_ANG_XX.wav": ("anger", "1001"),
        "1001_IEO_HAP_HI.wav": ("happy", "1001"),
        "1002_TIE_NEU_XX.wav": ("neutral", "1002"),
        "1091_WSI_SAD_LO.wav": ("sad", "1091"),
        "1091_MTI_FEA_MD.wav": ("fear", "1091"),
        "1050_ITH_DIS_XX.wav": ("disgust", "1050"),
    }
    splits, labels, report = build_corpus(
        DataArguments(dataset="crema_d", data_dir=str(tmp_path), validation_speakers=["1002"], test_speakers=["1091"])
    )
    assert labels == ["anger", "disgust", "fear", "happy", "neutral", "sad"] and report.skipped == []
    assert {name: len(split) for name, split in splits.items()} == {"train": 3, "validation": 1, "test": 2}


def test_crema_d_without_a_fitting_file_name_names_the_scheme_and_a_file(tmp_path):
    write_wav(tmp_path / "AudioWAV" / "1001_DFA_JOY_XX.wav")
    with pytest.raises(ValueError, match=r"'1001_DFA_JOY_XX\.wav'\); CREMA-D names files like 1001_DFA_ANG_XX\.wav"):
        load_records("crema_d", str(tmp_path))


# ------------------------------------------------------------------------------------------ audiofolder, csv, jsonl
def test_audiofolder_labels_are_folders_and_speakers_come_from_the_pattern(tmp_path):
    for label in ("angry", "sad"):
        for speaker in ("01", "02"):
            write_wav(tmp_path / label / f"spk{speaker}_{label}.wav", rate=8000, channels=2)
    records = load_records("audiofolder", str(tmp_path), speaker_pattern=r"spk(?P<speaker>\d+)_")
    assert sorted((r["label"], r["speaker"]) for r in records) == [
        ("angry", "01"),
        ("angry", "02"),
        ("sad", "01"),
        ("sad", "02"),
    ]
    with pytest.raises(
        ValueError, match=re.escape(r"speaker_pattern 'talker(\d)' matches no file name under ") + r".*spk01_angry\.wav"
    ):
        load_records("audiofolder", str(tmp_path), speaker_pattern=r"talker(\d)")


def test_a_corrupt_file_whose_name_the_speaker_pattern_misses_is_a_counted_reported_skip(tmp_path, caplog):
    for label in ("angry", "sad"):
        for speaker in ("01", "02", "03", "04"):
            write_wav(tmp_path / label / f"spk{speaker}_{label}.wav")
    (tmp_path / "sad" / "Copy of take 3.wav").write_bytes(b"not audio at all")  # misnamed and corrupt
    args = DataArguments(dataset="audiofolder", data_dir=str(tmp_path), speaker_pattern=r"spk(?P<speaker>\d+)_")
    with caplog.at_level("WARNING"):
        splits, _, report = build_corpus(args)
    assert sum(len(split) for split in splits.values()) == 8
    reason = r"speaker_pattern 'spk(?P<speaker>\d+)_' does not match the file name"
    assert report.skipped == [{"path": str(tmp_path / "sad" / "Copy of take 3.wav"), "reason": reason}]
    assert "Skipped 1 bad item(s)" in caplog.text
    assert "Copy of take 3.wav" in report.problems()  # what the end of a run prints


def test_csv_and_jsonl_manifests_read_path_label_speaker(tmp_path):
    write_wav(tmp_path / "clips" / "a.wav")
    write_wav(tmp_path / "clips" / "b.wav")
    (tmp_path / "m.csv").write_text("path,label,speaker\nclips/a.wav,happy,s1\nclips/b.wav,,\n")
    (tmp_path / "m.jsonl").write_text(
        '{"path": "clips/a.wav", "label": "happy", "speaker": "s1"}\n{"path": "clips/b.wav", "label": "sad"}\n'
    )
    csv_records = load_records("csv", None, manifest=str(tmp_path / "m.csv"))
    assert [(Path(r["path"]).name, r["label"], r["speaker"]) for r in csv_records] == [
        ("a.wav", "happy", "s1"),
        ("b.wav", None, None),
    ]
    jsonl_records = load_records("jsonl", str(tmp_path), manifest=str(tmp_path / "m.jsonl"))
    assert [(r["label"], r["speaker"]) for r in jsonl_records] == [("happy", "s1"), ("sad", None)]
    (tmp_path / "bad.csv").write_text("file,label\nclips/a.wav,happy\n")
    with pytest.raises(KeyError, match=r"bad\.csv: row 2 has no 'path' column"):
        load_records("csv", None, manifest=str(tmp_path / "bad.csv"))


def test_manifest_votes_come_from_a_votes_column_or_per_class_count_columns(tmp_path):
    write_wav(tmp_path / "a.wav")
    write_wav(tmp_path / "b.wav")
    (tmp_path / "m.csv").write_text(
        'path,label,votes\na.wav,angry,"{""angry"": 2, ""sad"": 1}"\nb.wav,sad,\n', encoding="utf-8"
    )
    records = load_records("csv", None, manifest=str(tmp_path / "m.csv"), with_votes=True)
    assert [r["votes"] for r in records] == [{"angry": 2.0, "sad": 1.0}, None]
    (tmp_path / "counts.csv").write_text("path,label,votes_angry,votes_sad\na.wav,angry,2,1\nb.wav,sad,,3\n")
    records = load_records("csv", None, manifest=str(tmp_path / "counts.csv"), with_votes=True)
    assert [r["votes"] for r in records] == [{"angry": 2.0, "sad": 1.0}, {"angry": 0.0, "sad": 3.0}]
    (tmp_path / "m.jsonl").write_text('{"path": "a.wav", "label": "angry", "votes": {"angry": 1, "happy": 1}}\n')
    records = load_records("jsonl", None, manifest=str(tmp_path / "m.jsonl"), with_votes=True)
    assert records[0]["votes"] == {"angry": 1.0, "happy": 1.0}
    assert "votes" not in load_records("jsonl", None, manifest=str(tmp_path / "m.jsonl"))[0]


def test_bad_manifest_votes_name_the_file_and_row_in_one_line(tmp_path, capsys):
    (tmp_path / "m.csv").write_text("path,label,votes_angry\na.wav,angry,2\nb.wav,sad,many\n")
    with pytest.raises(ValueError, match=r"m\.csv: row 3: column votes_angry holds 'many', not a count"):
        load_records("csv", None, manifest=str(tmp_path / "m.csv"), with_votes=True)
    from hf_ser.cli import main as cli_main

    argv = ["train", "--dataset", "csv", "--manifest", str(tmp_path / "m.csv"), "--output_dir", str(tmp_path / "run")]
    assert cli_main([*argv, "--label_targets", "soft"]) == 2
    assert capsys.readouterr().err == (
        f"hf-ser train: error: {tmp_path / 'm.csv'}: row 3: column votes_angry holds 'many', not a count\n"
    )
    (tmp_path / "m.jsonl").write_text('\n{"path": "a.wav", "label": "angry", "votes": {"angry": -2}}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl: row 2: vote count -2\.?0? for 'angry'"):
        load_records("jsonl", None, manifest=str(tmp_path / "m.jsonl"), with_votes=True)


def _generate_small_demo(root: str) -> str:
    from hf_ser.data.demo_corpus import generate_demo_corpus

    return str(generate_demo_corpus(root, speakers=2, per_emotion=2, seed=3))


def test_demo_corpus_is_renamed_into_place_whole_even_when_two_writers_generate_it(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    import hf_ser.data.demo_corpus

    written, write = [], hf_ser.data.demo_corpus.soundfile.write
    monkeypatch.setattr(
        hf_ser.data.demo_corpus.soundfile,
        "write",
        lambda path, *args, **kwargs: (written.append(Path(path)), write(path, *args, **kwargs)),
    )
    root = tmp_path / "demo"
    (root / "angry").mkdir(parents=True)  # what an interrupted in-place write used to leave
    (root / "angry" / "spk01_angry_00.wav").write_bytes(b"")
    with ThreadPoolExecutor(2) as pool:  # the folders are the shared state, so threads race as processes would
        assert list(pool.map(_generate_small_demo, [str(root)] * 2)) == [str(root)] * 2
    files = sorted(root.glob("*/*.wav"))
    assert len(files) == 2 * 2 * 4 and all(soundfile.info(path).frames > 0 for path in files)
    assert [path.name for path in tmp_path.iterdir()] == ["demo"]  # no staging folder left behind
    # no file is ever written inside the corpus folder: a reader sees no corpus or a whole one
    assert len(written) >= len(files) and not any(root in path.parents for path in written)
    first = {path.name: path.read_bytes() for path in files}
    assert _generate_small_demo(str(root)) == str(root)  # complete: nothing is rewritten
    assert {path.name: path.read_bytes() for path in sorted(root.glob("*/*.wav"))} == first


# ------------------------------------------------------------------------------------ dimensions (`task: dimensional`)


def test_iemocap_dimensions_come_from_the_vad_triple_and_xxx_utterances_keep_theirs(tmp_path):
    root = write_iemocap(tmp_path / "IEMOCAP_full_release", sessions=1, utterances=6)
    records = by_name(load_records("iemocap", str(root)))
    # the first utterance line of Session 1: `[V, A, D]` in that order, on IEMOCAP's 1-5 scale
    valence, arousal, dominance = iemocap_values(0)
    first = records["Ses01F_impro01_F000.wav"]
    assert first["dimensions"] == {"valence": valence, "arousal": arousal, "dominance": dominance}
    no_class = records["Ses01F_impro01_F004.wav"]  # code xxx: no majority class, still rated
    assert no_class["label"] is None and no_class["dimensions"] == dict(
        zip(["valence", "arousal", "dominance"], iemocap_values(4))
    )
    args = DataArguments(dataset="iemocap", data_dir=str(root), task="dimensional", dimensions=["valence", "arousal"])
    corpus = check_corpus(args)
    assert corpus.label_names == ["valence", "arousal"] and len(corpus.dataset) == 6  # xxx included
    row = corpus.dataset.with_format(None)[0]
    assert row["label"] == pytest.approx([valence, arousal])
    categorical = check_corpus(DataArguments(dataset="iemocap", data_dir=str(root)))
    assert len(categorical.dataset) == 5  # the categorical task still skips xxx


def test_an_iemocap_triple_that_is_not_three_numbers_is_a_counted_skip_naming_file_and_line(tmp_path):
    root = write_iemocap(tmp_path / "IEMOCAP_full_release", sessions=1, utterances=6)
    evaluation = root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    lines = evaluation.read_text().splitlines()
    line_number = next(i for i, line in enumerate(lines, 1) if "Ses01F_impro01_M001" in line)
    lines[line_number - 1] = re.sub(r"\[[^\]]*\]$", "[2.5000, n/a, 3.0000]", lines[line_number - 1])
    evaluation.write_text("\n".join(lines) + "\n")
    corpus = check_corpus(DataArguments(dataset="iemocap", data_dir=str(root), task="dimensional"))
    assert len(corpus.dataset) == 5
    assert corpus.report.skipped == [
        {
            "path": str(root / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / "Ses01F_impro01_M001.wav"),
            "reason": f"Ses01F_impro01.txt:{line_number}: [V, A, D] is [2.5000, n/a, 3.0000], not three numbers",
        }
    ]


def test_a_corpus_without_dimensions_or_an_unknown_dimension_is_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"task: dimensional needs a corpus with dimension values .*'emodb'"):
        check_corpus(DataArguments(dataset="emodb", data_dir=str(tmp_path), task="dimensional"))
    root = write_iemocap(tmp_path / "IEMOCAP_full_release", sessions=1, utterances=2)
    with pytest.raises(ValueError, match=r"\['power'\] are not dimensions of dataset 'iemocap' \(it has valence"):
        check_corpus(DataArguments(dataset="iemocap", data_dir=str(root), task="dimensional", dimensions=["power"]))


def test_manifest_dimension_columns_missing_non_numeric_and_empty(tmp_path):
    for name in ("a", "b", "c"):
        write_wav(tmp_path / "clips" / f"{name}.wav")
    (tmp_path / "m.csv").write_text(
        "path,speaker,arousal,valence\nclips/a.wav,s1,0.5,-0.25\nclips/b.wav,s2,,0.1\nclips/c.wav,s3,0.9,0.3\n"
    )
    args = DataArguments(dataset="csv", manifest=str(tmp_path / "m.csv"), task="dimensional", dimensions=["arousal"])
    records = load_records("csv", None, manifest=str(tmp_path / "m.csv"), dimensions=["arousal", "valence"])
    assert [r["dimensions"] for r in records] == [
        {"arousal": 0.5, "valence": -0.25},
        None,
        {"arousal": 0.9, "valence": 0.3},
    ]
    assert records[1]["label"] is None  # no label column needed
    corpus = check_corpus(args)
    assert len(corpus.dataset) == 2
    assert corpus.report.skipped == [
        {"path": str(tmp_path / "clips" / "b.wav"), "reason": f"{tmp_path / 'm.csv'}: row 3 has no value for 'arousal'"}
    ]
    with pytest.raises(KeyError, match=r"m\.csv: row 2 has no 'dominance' column for `dimensions`"):
        load_records("csv", None, manifest=str(tmp_path / "m.csv"), dimensions=["dominance"])
    (tmp_path / "m.jsonl").write_text('{"path": "clips/a.wav", "arousal": "high"}\n')
    with pytest.raises(ValueError, match=r"m\.jsonl: row 1 column 'arousal' is 'high', not a number"):
        load_records("jsonl", None, manifest=str(tmp_path / "m.jsonl"), dimensions=["arousal"])


def test_msp_podcast_reads_consensus_labels_dimensions_speakers_and_its_own_partition(tmp_path):
    rows = [
        ("MSP-PODCAST_0001_0001.wav", "H", "5.2", "6.0", "4.4", "101", "Train"),
        ("MSP-PODCAST_0001_0002.wav", "X", "3.0", "3.5", "3.1", "101", "Train"),
        ("MSP-PODCAST_0002_0001.wav", "A", "6.1", "1.8", "5.9", "202", "Development"),
        ("MSP-PODCAST_0003_0001.wav", "N", "4.0", "4.0", "4.2", "303", "Test1"),
        ("MSP-PODCAST_0004_0001.wav", "S", "2.2", "2.0", "2.5", "Unknown", "Test2"),
        ("missing_0005_0001.wav", "N", "4.0", "4.0", "4.0", "404", "Train"),
    ]
    root = write_msp_podcast(tmp_path / "MSP-Podcast", rows)
    records = by_name(load_records("msp_podcast", str(root)))
    first = records["MSP-PODCAST_0001_0001.wav"]
    assert (first["label"], first["speaker"], first["corpus_split"]) == ("happy", "101", "train")
    assert first["dimensions"] == {"arousal": 5.2, "valence": 6.0, "dominance": 4.4}
    assert records["MSP-PODCAST_0001_0002.wav"]["skip_reason"].startswith("no consensus emotion (EmoClass X)")
    assert records["MSP-PODCAST_0004_0001.wav"]["speaker"] is None
    assert "but the wav is missing" in records["missing_0005_0001.wav"]["skip_reason"]
    args = DataArguments(dataset="msp_podcast", data_dir=str(root), task="dimensional", use_corpus_split=True)
    splits, names, report = build_corpus(args)
    assert names == ["arousal", "valence", "dominance"]
    assert {name: len(split) for name, split in splits.items()} == {"train": 2, "validation": 1, "test": 1}
    summary = report.split_summary()  # what a run prints when it starts
    assert "msp_podcast: 4 items, 3 dimensions (arousal, valence, dominance)" in summary
    assert "mean arousal 6.10, valence 1.80, dominance 5.90" in summary
    assert report.splits["validation"]["dimension_means"] == pytest.approx(
        {"arousal": 6.1, "valence": 1.8, "dominance": 5.9}
    )
    reasons = sorted(item["reason"].split(" (")[0] for item in report.skipped)
    assert reasons == [
        "in the corpus's set 'Test2', not train, validation or test",
        "listed in labels_consensus.csv",
    ]


MSP_DETAILED = (
    "FileName,EmoDetail\n"
    'MSP-PODCAST_0001_0008.wav,"WORKER00014; Neutral; Concerned,Confused; A:3.000000; V:4.000000; D:4.000000;"\n'
    'MSP-PODCAST_0001_0008.wav,"WORKER00021; Neutral; ; A:2.000000; V:4.000000; D:3.000000;"\n'
    'MSP-PODCAST_0001_0008.wav,"WORKER00102; Other-Curious; Curious; A:4.000000; V:4.000000; D:4.000000;"\n'
    'MSP-PODCAST_0002_0033.wav,"WORKER00014; Angry; Frustrated,Annoyed; A:6.000000; V:2.000000; D:5.000000;"\n'
    'MSP-PODCAST_0002_0033.wav,"WORKER00055; Contempt; Annoyed; A:5.000000; V:2.000000; D:5.000000;"\n'
    'MSP-PODCAST_0002_0033.wav,"WORKER00077; Frustrated; ; A:5.000000; V:3.000000; D:4.000000;"\n'
)


def test_msp_podcast_detailed_labels_are_one_primary_vote_per_annotator(tmp_path):
    from hf_ser.data.corpora import msp_podcast_votes

    (tmp_path / "labels_detailed.csv").write_text(MSP_DETAILED)
    assert msp_podcast_votes(tmp_path / "labels_detailed.csv") == {
        "MSP-PODCAST_0001_0008.wav": {"neutral": 2, "other": 1},
        # a primary emotion outside the nine classes stays itself: the data report counts it as outside the labels
        "MSP-PODCAST_0002_0033.wav": {"angry": 1, "contempt": 1, "frustrated": 1},
    }
    # earlier releases: one EmoClass_Major column per annotator row (names, or the consensus letters)
    (tmp_path / "old.csv").write_text(
        "FileName,Workers,EmoClass_Major,EmoClass_Second,EmoAct,EmoVal,EmoDom\n"
        "MSP-PODCAST_0001_0008.wav,WORKER1,Happy,,4,5,4\nMSP-PODCAST_0001_0008.wav,WORKER2,H,,4,5,4\n"
        "MSP-PODCAST_0001_0008.wav,WORKER3,Sad,,2,2,3\n"
    )
    assert msp_podcast_votes(tmp_path / "old.csv") == {"MSP-PODCAST_0001_0008.wav": {"happy": 2, "sad": 1}}


def test_msp_podcast_detailed_row_without_a_primary_emotion_names_the_file_and_row(tmp_path):
    from hf_ser.data.corpora import msp_podcast_votes

    (tmp_path / "labels_detailed.csv").write_text(MSP_DETAILED + "MSP-PODCAST_0003_0001.wav,WORKER00014\n")
    with pytest.raises(ValueError, match=r"labels_detailed\.csv: row 8 names no file or primary emotion"):
        msp_podcast_votes(tmp_path / "labels_detailed.csv")
    (tmp_path / "other.csv").write_text("FileName,Emotion\nMSP-PODCAST_0001_0008.wav,Happy\n")
    with pytest.raises(KeyError, match=r"other\.csv: expected columns FileName and EmoDetail \(or EmoClass_Major\)"):
        msp_podcast_votes(tmp_path / "other.csv")


def test_msp_podcast_soft_targets_come_from_labels_detailed_and_the_hard_default_needs_no_such_file(tmp_path):
    rows = [
        ("MSP-PODCAST_0001_0008.wav", "N", "3.0", "4.0", "3.7", "101", "Train"),
        ("MSP-PODCAST_0002_0033.wav", "A", "5.3", "2.3", "4.7", "101", "Train"),
        ("MSP-PODCAST_0003_0001.wav", "H", "4.0", "6.0", "4.2", "202", "Development"),  # not in labels_detailed.csv
        ("MSP-PODCAST_0004_0001.wav", "S", "2.2", "2.0", "2.5", "303", "Test1"),
    ]
    root = write_msp_podcast(tmp_path / "MSP-Podcast", rows)
    detailed = MSP_DETAILED + 'MSP-PODCAST_0004_0001.wav,"WORKER00009; Sad; ; A:2.0; V:2.0; D:2.0;"\n'
    args = DataArguments(
        dataset="msp_podcast",
        data_dir=str(root),
        labels=["neutral", "happy", "sad", "angry"],
        use_corpus_split=True,
        label_targets="soft",
    )
    with pytest.raises(
        FileNotFoundError,
        match=r"label_targets: soft reads MSP-Podcast's annotator votes from .*"
        r"labels_detailed\.csv, which does not exist",
    ):
        check_corpus(args)
    assert check_corpus(dataclasses.replace(args, label_targets="hard")).report.label_votes == {}
    (root / "Labels" / "labels_detailed.csv").write_text(detailed)
    corpus = check_corpus(args)
    targets = {Path(row["path"]).name: row["label_distribution"] for row in corpus.dataset.to_list()}
    assert targets == {
        "MSP-PODCAST_0001_0008.wav": [1.0, 0.0, 0.0, 0.0],  # 2 neutral votes; the `other` one is outside
        "MSP-PODCAST_0002_0033.wav": [0.0, 0.0, 0.0, 1.0],  # 1 angry vote; contempt and frustrated are outside
        "MSP-PODCAST_0003_0001.wav": [0.0, 1.0, 0.0, 0.0],  # no votes: its consensus label
        "MSP-PODCAST_0004_0001.wav": [0.0, 0.0, 1.0, 0.0],
    }
    assert corpus.report.label_votes["votes_outside_labels"] == {"contempt": 1, "frustrated": 1, "other": 1}
    assert (corpus.report.label_votes["items_with_votes"], corpus.report.label_votes["one_hot_without_votes"]) == (3, 1)


def test_a_stale_corpus_is_moved_aside_once_and_the_second_writer_finds_it_gone(tmp_path):
    """The race the test above can only hit by chance: two writers both found the stale folder and both deleted it
    in place, and the slower `rmtree` failed on files the other had removed."""
    from hf_ser.data.demo_corpus import _move_aside

    root = tmp_path / "demo"
    (root / "angry").mkdir(parents=True)
    (root / "angry" / "spk01_angry_00.wav").write_bytes(b"")
    _move_aside(root)
    assert not root.exists()
    _move_aside(root)  # the second writer: no error, nothing left behind
    assert list(tmp_path.iterdir()) == []
