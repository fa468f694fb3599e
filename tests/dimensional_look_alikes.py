"""Look-alikes for the dimensional tests: of the corpora that carry emotion dimensions, an IEMOCAP release tree
(EmoEvaluation files with `[V, A, D]` triples) and an MSP-Podcast folder (`Labels/labels_consensus.csv`); and tiny
dimensional models of both families.

Every clip is a tone whose loudness rises with its arousal and whose pitch rises with its valence, plus a little
noise, so that a tiny model can learn something in a few steps; no two clips are the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

RATE = 16000
IEMOCAP_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
IEMOCAP_CODES = ["neu", "hap", "sad", "ang", "xxx", "fru"]


def write_clip(path: Path, arousal: float, valence: float, seed: int, seconds: float = 0.6, scale: float = 5.0):
    """A tone: amplitude from arousal, pitch from valence (both on a 1-`scale` scale), noise from `seed`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    time = np.arange(round(seconds * RATE)) / RATE
    tone = np.sin(2 * np.pi * (150 + 100 * valence) * time) * (0.1 * arousal / scale)
    soundfile.write(path, (tone + 0.01 * rng.standard_normal(time.size)).astype(np.float32), RATE)
    return path


def iemocap_values(index: int) -> tuple[float, float, float]:
    """The (valence, arousal, dominance) of the utterance numbered `index`: spread over IEMOCAP's 1-5 scale."""
    rng = np.random.default_rng(1000 + index)
    valence, arousal = (float(v) for v in np.round(rng.uniform(1.0, 5.0, 2) * 2) / 2)
    return valence, arousal, float(np.clip(arousal + rng.choice([-0.5, 0.0, 0.5]), 1.0, 5.0))


def evaluation_line(start: float, utterance: str, code: str, vad: str) -> str:
    """One utterance of an EmoEvaluation file, with the evaluators' lines that follow it in the release."""
    return (
        f"[{start:.4f} - {start + 2:.4f}]\t{utterance}\t{code}\t[{vad}]\n"
        "C-E2:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"
    )


def write_iemocap(root: Path, sessions: int = 3, utterances: int = 8) -> Path:
    """Sessions 1..`sessions`, one improvised dialog each with `utterances` turns alternating female and male actors
    (so 2 speakers per session), every code of `IEMOCAP_CODES` in turn (`xxx` has dimensions but no class)."""
    index = 0
    for session in range(1, sessions + 1):
        dialog = f"Ses{session:02d}F_impro01"
        text = IEMOCAP_HEADER
        for turn in range(utterances):
            utterance = f"{dialog}_{'FM'[turn % 2]}{turn:03d}"
            valence, arousal, dominance = iemocap_values(index)
            vad = f"{valence:.4f}, {arousal:.4f}, {dominance:.4f}"
            text += evaluation_line(2.0 * turn, utterance, IEMOCAP_CODES[turn % len(IEMOCAP_CODES)], vad)
            wav = root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utterance}.wav"
            write_clip(wav, arousal, valence, seed=index)
            index += 1
        evaluation = root / f"Session{session}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        evaluation.parent.mkdir(parents=True, exist_ok=True)
        evaluation.write_text(text)
    return root


MSP_HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"


def write_msp_podcast(root: Path, rows: list[tuple]) -> Path:
    """`Audios/<FileName>` and `Labels/labels_consensus.csv` of `rows`: (FileName, EmoClass, EmoAct, EmoVal, EmoDom,
    SpkrID, Split_Set); a FileName starting with `missing` gets no wav."""
    lines = MSP_HEADER
    for seed, (name, code, act, val, dom, speaker, split_set) in enumerate(rows):
        lines += f"{name},{code},{act},{val},{dom},{speaker},Female,{split_set}\n"
        if not name.startswith("missing"):
            arousal = float(act) if act else 4.0
            valence = float(val) if val not in ("", None) and str(val).replace(".", "").isdigit() else 4.0
            write_clip(root / "Audios" / name, arousal, valence, seed=500 + seed, scale=7.0)
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    (root / "Labels" / "labels_consensus.csv").write_text(lines)
    return root


DIMENSIONS = {0: "arousal", 1: "valence", 2: "dominance"}


def tiny_dimensional_model(family: str, dimensional_loss: str = "ccc"):
    """A random-weight regression model of `family` (`wav2vec2-ser` or `ser-cnn`) with one output per dimension."""
    import torch
    from conftest import TINY_WAV2VEC2

    from hf_ser import SERCNN, SERCNNConfig, Wav2Vec2SER, Wav2Vec2SERConfig

    task = {"problem_type": "regression", "id2label": DIMENSIONS, "dimensional_loss": dimensional_loss}
    task["label2id"] = {name: i for i, name in DIMENSIONS.items()}
    torch.manual_seed(0)
    if family == "wav2vec2-ser":
        return Wav2Vec2SER(Wav2Vec2SERConfig(backbone_config=dict(TINY_WAV2VEC2), head_hidden_sizes=[16], **task))
    return SERCNN(SERCNNConfig(block_channels=[8], pool_blocks=[0], attention_heads=2, attention_hidden=8, **task))


def save_tiny_dimensional_model(family: str, folder: Path) -> Path:
    """`tiny_dimensional_model(family)` saved with a feature extractor: a folder that loads like a dimensional run's."""
    from transformers import Wav2Vec2FeatureExtractor

    tiny_dimensional_model(family).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=family == "wav2vec2-ser", return_attention_mask=True).save_pretrained(folder)
    return folder
