"""Corpus adapters: each reads a corpus's own layout and names into one list of records.

A record is `{"path": str, "label": str, "speaker": str | None}`; `hf_ser.data` turns records into a `datasets.Dataset`.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Callable, Optional

from .audio import AUDIO_EXTENSIONS

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


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def _require_dir(data_dir: Path, corpus: str) -> Path:
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data_dir {str(data_dir)!r} for dataset {corpus!r} is not a folder")
    return data_dir


def emodb_records(data_dir: Path, **_) -> list[Record]:
    """EmoDB (Burkhardt et al., 2005): `wav/03a01Fa.wav` = speaker 03, text a01, emotion F, version a."""
    data_dir = _require_dir(data_dir, "emodb")
    wav_dir = data_dir / "wav" if (data_dir / "wav").is_dir() else data_dir
    records = []
    for path in _audio_files(wav_dir):
        match = EMODB_NAME.match(path.stem)
        if match is None:
            raise ValueError(f"{path}: not an EmoDB file name (expected e.g. 03a01Fa.wav)")
        records.append(
            {"path": str(path), "label": EMODB_EMOTIONS[match["emotion"]], "speaker": match["speaker"]}
        )
    if not records:
        raise FileNotFoundError(f"no EmoDB .wav files under {wav_dir}")
    return records


def _speaker_from_name(path: Path, pattern: Optional[str]) -> Optional[str]:
    if not pattern:
        return None
    match = re.search(pattern, path.name)
    if match is None:
        raise ValueError(f"{path}: speaker_pattern {pattern!r} does not match the file name")
    return match.groupdict().get("speaker") or match.group(1 if match.groups() else 0)


def audiofolder_records(data_dir: Path, speaker_pattern: Optional[str] = None, **_) -> list[Record]:
    """`data_dir/<label>/.../<file>`: the label is the top-level folder; the speaker comes from `speaker_pattern`,
    a regular expression searched in the file name (named group `speaker`, else its first group)."""
    data_dir = _require_dir(data_dir, "audiofolder")
    records = []
    for label_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        for path in _audio_files(label_dir):
            records.append(
                {"path": str(path), "label": label_dir.name, "speaker": _speaker_from_name(path, speaker_pattern)}
            )
    if not records:
        raise FileNotFoundError(f"no audio files under {data_dir}/<label>/ (extensions {AUDIO_EXTENSIONS})")
    return records


def manifest_records(data_dir: Path, manifest: Optional[str] = None, **_) -> list[Record]:
    """A CSV or JSON-lines manifest with `path`, `label` and optionally `speaker` columns.

    `manifest` is the file (or `data_dir` itself when it is a file); relative paths are resolved against the
    manifest's folder.
    """
    manifest_path = Path(manifest) if manifest else data_dir
    if not manifest_path.is_file():
        raise FileNotFoundError(f"manifest {str(manifest_path)!r} does not exist")
    if manifest_path.suffix.lower() in (".jsonl", ".json"):
        with open(manifest_path, encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
    else:
        with open(manifest_path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    root = manifest_path.parent
    records = []
    for line_number, row in enumerate(rows, start=2):
        for key in ("path", "label"):
            if key not in row:
                raise KeyError(f"{manifest_path}: row {line_number} has no {key!r} column (columns: {sorted(row)})")
        path = Path(row["path"])
        records.append(
            {
                "path": str(path if path.is_absolute() else root / path),
                "label": None if row["label"] in (None, "") else str(row["label"]),
                "speaker": str(row["speaker"]) if row.get("speaker") not in (None, "") else None,
            }
        )
    return records


CORPORA: dict[str, Callable[..., list[Record]]] = {
    "emodb": emodb_records,
    "audiofolder": audiofolder_records,
    "csv": manifest_records,
    "jsonl": manifest_records,
}


def load_records(dataset: str, data_dir: Optional[str], **options) -> list[Record]:
    """Records of a local corpus named by `dataset` (one of `CORPORA`)."""
    if dataset not in CORPORA:
        raise KeyError(f"dataset {dataset!r} is not a local corpus; known: {sorted(CORPORA)}")
    if data_dir is None and dataset != "csv":
        raise ValueError(f"dataset {dataset!r} needs `data_dir`")
    return CORPORA[dataset](Path(data_dir) if data_dir else Path("."), **options)
