"""Corpus adapters: each reads a corpus's own layout and names into one list of records.

A record is `{"path": str, "label": str, "speaker": str | None}`; `hf_ser.data.dataset` turns records into a `datasets.Dataset`.
An item the adapter recognises but cannot use (a RAVDESS song, an IEMOCAP utterance without a majority label) is a
record with `label: None` and a `skip_reason`, which the data report lists. Corpora with emotion dimensions (IEMOCAP,
MSP-Podcast, manifests with numeric columns) add `"dimensions": {name: value}` on the corpus's own scale (None where
an item has none, with the reason in `dimension_problem`); `task: dimensional` trains on them.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Callable, Optional

from hf_ser.data.audio import AUDIO_EXTENSIONS, audio_files_under
from hf_ser.data.votes import parse_vote_counts

Record = dict

EMODB_EMOTIONS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
EMODB_NAME = re.compile(r"^(?P<speaker>\d\d)(?P<text>[ab]\d\d)(?P<emotion>[WLEAFTN])(?P<version>[a-z])$")


def _require_dir(data_dir: Path, corpus: str) -> Path:
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data_dir {str(data_dir)!r} for dataset {corpus!r} is not a folder")
    return data_dir


def _records_from_file_names(
    data_dir: Path, corpus: str, subdir: str, pattern: re.Pattern, emotions: dict, example: str
) -> list[Record]:
    """Corpora whose file names carry speaker and emotion (`pattern` with groups `speaker` and `emotion`)."""
    data_dir = _require_dir(data_dir, corpus)
    wav_dir = data_dir / subdir if (data_dir / subdir).is_dir() else data_dir
    records = []
    for path in audio_files_under(wav_dir):
        match = pattern.match(path.stem)
        if match is None:
            records.append(_skipped(path, f"not a file name of the {corpus} scheme (expected e.g. {example})"))
            continue
        records.append({"path": str(path), "label": emotions[match["emotion"]], "speaker": match["speaker"]})
    if not records:
        raise FileNotFoundError(f"no {corpus} .wav files under {wav_dir}")
    _require_a_named_file(records, f"the {corpus} naming scheme", wav_dir, f"{corpus} names files like {example}")
    return records


def _require_a_named_file(records: list[Record], scheme: str, folder: Path, hint: str) -> None:
    """A file whose name does not fit is a reported skip; when none fits, the scheme itself is wrong: say so."""
    if records and all(record.get("skip_reason") for record in records):
        raise ValueError(
            f"{scheme} matches no file name under {folder} (e.g. {Path(records[0]['path']).name!r}); {hint}"
        )


def emodb_records(data_dir: Path, **_) -> list[Record]:
    """EmoDB (Burkhardt et al., 2005): `wav/03a01Fa.wav` = speaker 03, text a01, emotion F, version a."""
    return _records_from_file_names(data_dir, "EmoDB", "wav", EMODB_NAME, EMODB_EMOTIONS, "03a01Fa.wav")


def _skipped(path: Path | str, reason: str) -> Record:
    """A record that `hf_ser.data.dataset.select_labels` drops and lists in the data report with `reason`."""
    return {"path": str(path), "label": None, "speaker": None, "skip_reason": reason}


RAVDESS_EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
# modality (01 audio-video, 02 video-only, 03 audio-only) - vocal channel (01 speech, 02 song) - emotion - intensity
# (01 normal, 02 strong) - statement (01 "Kids are talking by the door", 02 "Dogs are sitting by the door") -
# repetition - actor (01-24; odd male, even female).
RAVDESS_NAME = re.compile(
    r"^(?P<modality>0[123])-(?P<channel>0[12])-(?P<emotion>0[1-8])-(?P<intensity>0[12])-(?P<statement>0[12])"
    r"-(?P<repetition>0[12])-(?P<actor>\d\d)$"
)


def ravdess_records(data_dir: Path, **_) -> list[Record]:
    """RAVDESS (Livingstone & Russo, 2018) speech: `Actor_12/03-01-05-01-02-01-12.wav`, 8 emotions, 24 actors.

    The speaker is the actor (`"12"`). Song files (vocal channel 02, the separate "Audio_Song" download) are
    skipped and reported, so `data_dir` may hold both downloads. Merge calm into neutral with `label_map: {calm:
    neutral}` for the common 7-class set.
    """
    data_dir = _require_dir(data_dir, "ravdess")
    records = []
    for path in audio_files_under(data_dir):
        match = RAVDESS_NAME.match(path.stem)
        if match is None:
            raise ValueError(
                f"{path}: not a RAVDESS file name (expected modality-channel-emotion-intensity-statement-repetition-"
                "actor, e.g. 03-01-05-01-02-01-12.wav)"
            )
        if match["channel"] == "02":
            records.append(_skipped(path, "RAVDESS song (vocal channel 02); hf-ser uses the speech recordings"))
            continue
        records.append({"path": str(path), "label": RAVDESS_EMOTIONS[match["emotion"]], "speaker": match["actor"]})
    if not records:
        raise FileNotFoundError(f"no RAVDESS .wav files under {data_dir} (expected Actor_XX/03-01-...-XX.wav)")
    return records


IEMOCAP_EMOTIONS = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "excited",
    "sad": "sad",
    "ang": "angry",
    "fru": "frustrated",
    "sur": "surprised",
    "fea": "fearful",
    "dis": "disgusted",
    "oth": "other",
}
IEMOCAP_NO_AGREEMENT = "xxx"
# `[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]`: one line per utterance.
IEMOCAP_EVALUATION_LINE = re.compile(
    r"^\[[\d.]+ - [\d.]+\]\s+(?P<utterance>Ses\S+)\s+(?P<code>\w+)\s+\[(?P<vad>[^\]]*)\]"
)
# The utterance line's triple is the evaluators' mean valence, activation (arousal) and dominance, on a 1-5 scale.
IEMOCAP_DIMENSIONS = ("valence", "arousal", "dominance")
# `C-E2:<TAB>Frustration; Anger;<TAB>(comment)`: an evaluator's categories for the utterance line above. `C-F1` /
# `C-M1` lines are the actors' own assessments, which the release's consensus label does not use either.
IEMOCAP_EVALUATOR_LINE = re.compile(r"^C-(?P<rater>[A-Z]+\d*):(?P<categories>.*?)(\s*\(.*\))?\s*$")
IEMOCAP_CATEGORIES = {
    "neutral": "neutral",
    "neutral state": "neutral",
    "happiness": "happy",
    "excited": "excited",
    "sadness": "sad",
    "anger": "angry",
    "frustration": "frustrated",
    "surprise": "surprised",
    "fear": "fearful",
    "disgust": "disgusted",
    "other": "other",
}
# Ses01F_impro01_M003: session 01, markers on the female actor, utterance 003 spoken by the male actor.
IEMOCAP_UTTERANCE = re.compile(r"^Ses(?P<session>\d\d)[FM]_.+_(?P<gender>[FM])\d+$")


def _iemocap_category(category: str, where: str, line: str) -> str:
    name = category.strip().lower()
    if name.startswith("other"):  # free-text variants such as `Other:curious`
        return "other"
    if name not in IEMOCAP_CATEGORIES:
        raise ValueError(
            f"{where}: unknown IEMOCAP evaluator category {category.strip()!r} in {line!r} (known: "
            f"{', '.join(sorted({key.capitalize() for key in IEMOCAP_CATEGORIES}))})"
        )
    return IEMOCAP_CATEGORIES[name]


def _iemocap_dimensions(text: str, where: str) -> tuple[Optional[dict], str]:
    """The `[V, A, D]` triple of an utterance line as {valence, arousal, dominance}, or None and why not."""
    values = [value.strip() for value in text.split(",")]
    try:
        numbers = [float(value) for value in values]
    except ValueError:
        numbers = []
    if len(numbers) != len(IEMOCAP_DIMENSIONS):
        return None, f"{where}: [V, A, D] is [{text}], not three numbers"
    return dict(zip(IEMOCAP_DIMENSIONS, numbers)), ""


def _iemocap_labels(session_dir: Path, with_votes: bool = False) -> dict[str, tuple]:
    """Utterance name -> (label code, EmoEvaluation file, evaluator votes, dimensions, why no dimensions) for one
    session.

    With `with_votes`, every category an evaluator (`C-E*` line) ticks for an utterance is one vote for it, in
    hf-ser's label names; without, the evaluator lines are not read and the votes are empty."""
    labels = {}
    for text_file in sorted((session_dir / "dialog" / "EmoEvaluation").glob("*.txt")):
        if text_file.name.startswith("._"):  # macOS resource forks shipped in some copies of the release
            continue
        utterance = None
        for line_number, line in enumerate(text_file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            match = IEMOCAP_EVALUATION_LINE.match(line)
            if match is None:
                if with_votes and (evaluator := IEMOCAP_EVALUATOR_LINE.match(line)) and evaluator["rater"][0] == "E":
                    where = f"{text_file}:{line_number}"
                    if utterance is None:
                        raise ValueError(f"{where}: evaluator line {line!r} before any utterance line")
                    categories = [c for c in evaluator["categories"].split(";") if c.strip()]
                    if not categories:
                        raise ValueError(f"{where}: evaluator line {line!r} names no category")
                    votes = labels[utterance][2]
                    for category in categories:
                        label = _iemocap_category(category, where, line)
                        votes[label] = votes.get(label, 0) + 1
                continue
            code = match["code"]
            if code not in IEMOCAP_EMOTIONS and code != IEMOCAP_NO_AGREEMENT:
                raise ValueError(f"{text_file}:{line_number}: unknown IEMOCAP label code {code!r} in {line!r}")
            utterance = match["utterance"]
            dimensions, problem = _iemocap_dimensions(match["vad"], f"{text_file.name}:{line_number}")
            labels[utterance] = (code, text_file, {}, dimensions, problem)
    return labels


def iemocap_records(data_dir: Path, with_votes: bool = False, **_) -> list[Record]:
    """IEMOCAP (Busso et al., 2008): `Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M003.wav`, labelled by
    `Session1/dialog/EmoEvaluation/Ses01F_impro01.txt`.

    The speaker is the session plus the gender of the actor who speaks the utterance (`Ses01M` above: the letter
    before the utterance index, not the one after `Ses01`, which marks who wore the motion-capture markers), so the
    10 speakers can be split like sessions. Utterances without a majority label (`xxx`) and wav files without an
    evaluation line are skipped and reported. The standard 4-class set: `labels: [neutral, happy, sad, angry]`,
    `label_map: {excited: happy}`. `with_votes`: each record also carries its evaluators' `votes`
    (`_iemocap_labels`). Each utterance line's `[V, A, D]` triple gives its dimensions (1-5), `xxx` utterances
    included.
    """
    data_dir = _require_dir(data_dir, "iemocap")
    sessions = sorted(p for p in data_dir.glob("Session*") if p.is_dir())
    if not sessions:
        raise FileNotFoundError(f"no Session1..Session5 folders under {data_dir} (the IEMOCAP_full_release folder)")
    records = []
    for session_dir in sessions:
        labels = _iemocap_labels(session_dir, with_votes)
        evaluation_dir = session_dir / "dialog" / "EmoEvaluation"
        seen = set()
        for path in audio_files_under(session_dir / "sentences" / "wav"):
            name = path.stem
            match = IEMOCAP_UTTERANCE.match(name)
            if match is None or name not in labels:
                reason = "not an IEMOCAP utterance name" if match is None else f"no line for it in {evaluation_dir}"
                records.append(_skipped(path, reason))
                continue
            seen.add(name)
            code, text_file, votes, dimensions, problem = labels[name]
            record = {
                "path": str(path),
                "label": IEMOCAP_EMOTIONS.get(code),
                "speaker": f"Ses{match['session']}{match['gender']}",
                "dimensions": dimensions,
                "dimension_problem": problem,
            }
            if code == IEMOCAP_NO_AGREEMENT:  # no class, but its dimensions are evaluators' means like any other's
                record["skip_reason"] = f"no majority emotion (xxx) in {text_file.name}"
            records.append({**record, "votes": votes} if with_votes else record)
        for name in sorted(set(labels) - seen):
            expected = session_dir / "sentences" / "wav" / name.rsplit("_", 1)[0] / f"{name}.wav"
            records.append(_skipped(expected, f"listed in {labels[name][1].name} but the wav file is missing"))
    if not any(record["label"] for record in records):
        raise FileNotFoundError(
            f"no labelled IEMOCAP utterances under {data_dir} (expected SessionN/sentences/wav/<dialog>/<utt>.wav "
            "and SessionN/dialog/EmoEvaluation/<dialog>.txt)"
        )
    return records


CREMA_D_EMOTIONS = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
# 1001_DFA_ANG_XX: actor 1001-1091, sentence (12 three-letter codes), emotion, level (LO, MD, HI, XX unspecified).
CREMA_D_NAME = re.compile(
    r"^(?P<speaker>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>ANG|DIS|FEA|HAP|NEU|SAD)_(?P<level>[A-Z]{1,2})$"
)


def crema_d_records(data_dir: Path, **_) -> list[Record]:
    """CREMA-D (Cao et al., 2014): `AudioWAV/1001_DFA_ANG_XX.wav`, 6 emotions, 91 actors (speaker `"1001"`)."""
    return _records_from_file_names(
        data_dir, "CREMA-D", "AudioWAV", CREMA_D_NAME, CREMA_D_EMOTIONS, "1001_DFA_ANG_XX.wav"
    )


def audiofolder_records(data_dir: Path, speaker_pattern: Optional[str] = None, **_) -> list[Record]:
    """`data_dir/<label>/.../<file>`: the label is the top-level folder; the speaker comes from `speaker_pattern`,
    a regular expression searched in the file name (named group `speaker`, else its first group). A file whose name
    the pattern does not match is skipped and reported; if no name matches, the pattern is an error."""
    data_dir = _require_dir(data_dir, "audiofolder")
    records = []
    for label_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        for path in audio_files_under(label_dir):
            match = re.search(speaker_pattern, path.name) if speaker_pattern else None
            if speaker_pattern and match is None:
                records.append(_skipped(path, f"speaker_pattern '{speaker_pattern}' does not match the file name"))
                continue
            speaker = (match.groupdict().get("speaker") or match.group(1 if match.groups() else 0)) if match else None
            records.append({"path": str(path), "label": label_dir.name, "speaker": speaker})
    if not records:
        raise FileNotFoundError(f"no audio files under {data_dir}/<label>/ (extensions {AUDIO_EXTENSIONS})")
    _require_a_named_file(
        records,
        f"speaker_pattern '{speaker_pattern}'",
        data_dir,
        "fix the pattern: a regular expression searched in the file name, whose group `speaker` (or first group) is "
        r"the speaker, e.g. 'spk(?P<speaker>\d+)_' for spk03_take1.wav",
    )
    return records


def _inside_root(path: str, root: Path, manifest_path: Path, line_number: int, allow_absolute_paths: bool) -> str:
    """The row's audio path under the manifest's folder; `..` or absolute paths are refused unless allowed, so a
    manifest cannot make hf-ser read files outside the dataset it describes."""
    root = root.absolute()
    joined = Path(os.path.normpath(root / path))  # lexical: symlinks inside the root stay allowed
    if not allow_absolute_paths and (Path(path).is_absolute() or not joined.is_relative_to(root)):
        raise ValueError(
            f"{manifest_path}: row {line_number} path {path!r} points outside the dataset root {str(root)!r}; "
            "use paths relative to the manifest's folder, or set allow_absolute_paths: true if you trust the manifest"
        )
    return str(joined)


VOTE_COLUMN_PREFIX = "votes_"


def _manifest_votes(row: dict, where: str) -> Optional[dict[str, float]]:
    """A manifest row's annotator votes: a `votes` cell (a JSON object `{"angry": 2, "sad": 1}`, or the object itself
    in JSON lines), or one `votes_<label>` count column per class (an empty cell counts 0); None without either."""
    columns = {
        key[len(VOTE_COLUMN_PREFIX) :]: value for key, value in row.items() if key.startswith(VOTE_COLUMN_PREFIX)
    }
    if row.get("votes") not in (None, ""):
        if columns:
            raise ValueError(f"{where}: give votes in a `votes` column or in `votes_<label>` columns, not both")
        return parse_vote_counts(row["votes"], where)
    if not columns:
        return None
    counts = {}
    for label, value in columns.items():
        if isinstance(value, str):
            try:
                value = float(value) if value.strip() else 0.0
            except ValueError:
                raise ValueError(f"{where}: column {VOTE_COLUMN_PREFIX}{label} holds {value!r}, not a count") from None
        counts[label] = 0.0 if value is None else value
    return parse_vote_counts(counts, where)


def _number(value, where: str, column: str) -> Optional[float]:
    """A manifest cell as a float; empty is None (a counted skip); anything else that is not a number is an error."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        value = str(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} column {column!r} is {value!r}, not a number") from None


def _dimension_values(row: dict, dimensions: list[str], where: str) -> tuple[Optional[dict], str]:
    """The row's value of each dimension column, or None and which column is empty."""
    for column in dimensions:
        if column not in row:
            raise KeyError(f"{where} has no {column!r} column for `dimensions` (columns: {sorted(row)})")
    values = {column: _number(row[column], where, column) for column in dimensions}
    empty = [column for column, value in values.items() if value is None]
    return (None, f"{where} has no value for {empty[0]!r}") if empty else (values, "")


def manifest_records(
    data_dir: Path,
    manifest: Optional[str] = None,
    allow_absolute_paths: bool = False,
    with_votes: bool = False,
    dimensions: Optional[list[str]] = None,
    **_,
) -> list[Record]:
    """A CSV or JSON-lines manifest with `path`, `label` and optionally `speaker` columns.

    `manifest` is the file (or `data_dir` itself when it is a file); relative paths are resolved against the
    manifest's folder and must stay inside it (see `allow_absolute_paths`). `with_votes`: each record also carries
    the row's annotator `votes` (`_manifest_votes`). With `dimensions` (`task: dimensional`) a numeric column of
    each name is read, and `label` is optional: a missing dimension column or a value that is not a number is an error
    naming the file, row and column; an empty value is a reported skip.
    """
    manifest_path = Path(manifest) if manifest else data_dir
    if not manifest_path.is_file():
        raise FileNotFoundError(f"manifest {str(manifest_path)!r} does not exist")
    if manifest_path.suffix.lower() in (".jsonl", ".json"):
        with open(manifest_path, encoding="utf-8") as handle:
            numbered_rows = [(number, json.loads(line)) for number, line in enumerate(handle, 1) if line.strip()]
    else:
        with open(manifest_path, newline="", encoding="utf-8") as handle:
            numbered_rows = list(enumerate(csv.DictReader(handle), start=2))  # line 1 is the header
    root = manifest_path.parent
    records = []
    for line_number, row in numbered_rows:
        for key in ("path",) if dimensions else ("path", "label"):
            if key not in row:
                raise KeyError(f"{manifest_path}: row {line_number} has no {key!r} column (columns: {sorted(row)})")
        record = {
            "path": _inside_root(str(row["path"]), root, manifest_path, line_number, allow_absolute_paths),
            "label": None if row.get("label") in (None, "") else str(row["label"]),
            "speaker": str(row["speaker"]) if row.get("speaker") not in (None, "") else None,
        }
        if with_votes:
            record["votes"] = _manifest_votes(row, f"{manifest_path}: row {line_number}")
        if dimensions:
            where = f"{manifest_path}: row {line_number}"
            record["dimensions"], record["dimension_problem"] = _dimension_values(row, dimensions, where)
        records.append(record)
    return records


MSP_PODCAST_EMOTIONS = {
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprise",
    "F": "fear",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
    "O": "other",
}
MSP_PODCAST_NO_AGREEMENT = "X"
MSP_PODCAST_LABELS = Path("Labels") / "labels_consensus.csv"
# hf-ser's names of the consensus columns: mean annotator ratings on a 1-7 scale.
MSP_PODCAST_DIMENSIONS = {"arousal": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}
# Split_Set -> hf-ser's split (`use_corpus_split`); other sets (Test2, ...) are left out of that split, reported.
MSP_PODCAST_SPLITS = {"Train": "train", "Development": "validation", "Test1": "test"}


MSP_PODCAST_DETAILED_LABELS = Path("Labels") / "labels_detailed.csv"


def _msp_podcast_vote_name(primary: str) -> str:
    """An annotator's primary emotion in hf-ser's names of MSP-Podcast's classes (`Angry` -> `angry`; a consensus
    letter, as some releases' detailed files hold, through `MSP_PODCAST_EMOTIONS`). `Other-Curious` and the other
    free-text `Other` variants are `other`; a name outside the nine stays itself (lower-cased), so the data report
    counts it as outside the labels."""
    name = primary.strip()
    if name in MSP_PODCAST_EMOTIONS:
        return MSP_PODCAST_EMOTIONS[name]
    name = name.lower()
    return "other" if name.startswith("other") else name


def msp_podcast_votes(detailed_file: Path) -> dict[str, dict[str, float]]:
    """FileName -> {emotion: votes} from MSP-Podcast's per-annotator `labels_detailed.csv`: one row per annotator and
    utterance, whose primary emotion is one vote (secondary emotions are not votes). Two layouts: `FileName,
    EmoDetail` with `WORKER00014; Neutral; Concerned,Confused; A:3.0; V:4.0; D:4.0;` (v1.11 and later), or an
    `EmoClass_Major` column (earlier releases). A row without a primary emotion is an error naming the file and row."""
    with open(detailed_file, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "FileName" not in columns or not {"EmoDetail", "EmoClass_Major"} & set(columns):
            raise KeyError(
                f"{detailed_file}: expected columns FileName and EmoDetail (or EmoClass_Major), found {columns}"
            )
        votes: dict[str, dict[str, float]] = {}
        for line_number, row in enumerate(reader, start=2):
            if "EmoDetail" in row:
                fields = [part.strip() for part in (row["EmoDetail"] or "").split(";")]
                primary = fields[1] if len(fields) > 1 else ""
            else:
                primary = (row["EmoClass_Major"] or "").strip()
            if not primary or not (row["FileName"] or "").strip():
                raise ValueError(
                    f"{detailed_file}: row {line_number} names no file or primary emotion ({dict(row)}); expected "
                    'e.g. MSP-PODCAST_0001_0008.wav,"WORKER00014; Neutral; Concerned; A:3.0; V:4.0; D:4.0;"'
                )
            counts = votes.setdefault(row["FileName"].strip(), {})
            name = _msp_podcast_vote_name(primary)
            counts[name] = counts.get(name, 0) + 1
    return votes


def msp_podcast_records(data_dir: Path, with_votes: bool = False, **_) -> list[Record]:
    """MSP-Podcast (Lotfian & Busso, 2019): `Audios/MSP-PODCAST_0001_0008.wav`, labelled by
    `Labels/labels_consensus.csv` (FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set).

    EmoClass codes become labels (`X`, no agreement, has no class but keeps its dimensions); EmoAct / EmoVal / EmoDom
    are the arousal / valence / dominance of `task: dimensional`; SpkrID is the speaker (`Unknown` is none);
    Split_Set is the corpus's own partition (`use_corpus_split`). A row whose wav is missing is a reported skip.
    `with_votes`: each record also carries its annotators' `votes` from `Labels/labels_detailed.csv`
    (`msp_podcast_votes`; an utterance it does not list has none).
    """
    data_dir = _require_dir(data_dir, "msp_podcast")
    votes = {}
    if with_votes:
        detailed_file = data_dir / MSP_PODCAST_DETAILED_LABELS
        if not detailed_file.is_file():
            raise FileNotFoundError(
                f"label_targets: soft reads MSP-Podcast's annotator votes from {detailed_file}, which does not exist; "
                "unpack the release's Labels folder there, or train on the consensus with label_targets: hard"
            )
        votes = msp_podcast_votes(detailed_file)
    labels_file = data_dir / MSP_PODCAST_LABELS
    if not labels_file.is_file():
        raise FileNotFoundError(f"no {MSP_PODCAST_LABELS} under {data_dir} (the MSP-Podcast release folder)")
    with open(labels_file, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    required = ["FileName", "EmoClass", "SpkrID", "Split_Set", *MSP_PODCAST_DIMENSIONS.values()]
    missing = [column for column in required if rows and column not in rows[0]]
    if missing or not rows:
        raise KeyError(f"{labels_file}: no {missing or 'rows'} (columns: {sorted(rows[0]) if rows else []})")
    records = []
    for line_number, row in enumerate(rows, start=2):
        path = data_dir / "Audios" / row["FileName"]
        code = row["EmoClass"].strip()
        if code not in MSP_PODCAST_EMOTIONS and code != MSP_PODCAST_NO_AGREEMENT:
            raise ValueError(f"{labels_file}: row {line_number} has the unknown EmoClass {code!r}")
        if not path.is_file():
            records.append(_skipped(path, f"listed in {labels_file.name} (row {line_number}) but the wav is missing"))
            continue
        where = f"{labels_file}: row {line_number}"
        values = {name: _number(row[column], where, column) for name, column in MSP_PODCAST_DIMENSIONS.items()}
        empty = [MSP_PODCAST_DIMENSIONS[name] for name, value in values.items() if value is None]
        record = {
            "path": str(path),
            "label": MSP_PODCAST_EMOTIONS.get(code),
            "speaker": None if row["SpkrID"].strip() in ("", "Unknown") else row["SpkrID"].strip(),
            "dimensions": None if empty else values,
            "dimension_problem": f"{where} has no value for {empty[0]!r}" if empty else "",
            "corpus_split": MSP_PODCAST_SPLITS.get(row["Split_Set"].strip()),
            "corpus_split_name": row["Split_Set"].strip(),
        }
        if code == MSP_PODCAST_NO_AGREEMENT:
            record["skip_reason"] = f"no consensus emotion (EmoClass X) in {labels_file.name}"
        if with_votes:
            record["votes"] = votes.get(row["FileName"].strip())
        records.append(record)
    return records


CORPORA: dict[str, Callable[..., list[Record]]] = {
    "emodb": emodb_records,
    "ravdess": ravdess_records,
    "iemocap": iemocap_records,
    "crema_d": crema_d_records,
    "msp_podcast": msp_podcast_records,
    "audiofolder": audiofolder_records,
    "csv": manifest_records,
    "jsonl": manifest_records,
}


DIMENSIONAL_CORPORA = {
    "iemocap": list(IEMOCAP_DIMENSIONS),
    "msp_podcast": list(MSP_PODCAST_DIMENSIONS),
    "csv": None,  # the recipe's `dimensions`, as numeric columns
    "jsonl": None,
}


def load_records(dataset: str, data_dir: Optional[str], **options) -> list[Record]:
    """Records of a local corpus named by `dataset` (one of `CORPORA`)."""
    if dataset not in CORPORA:
        raise KeyError(f"dataset {dataset!r} is not a local corpus; known: {sorted(CORPORA)}")
    if data_dir is None and dataset not in ("csv", "jsonl"):
        raise ValueError(f"dataset {dataset!r} needs `data_dir`")
    return CORPORA[dataset](Path(data_dir) if data_dir else Path("."), **options)
