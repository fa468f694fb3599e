"""Specification of soft-label training (`label_targets: soft`): the soft cross-entropy, its place in `SERTrainer`,
and a run through the real Trainer on a look-alike IEMOCAP tree whose evaluator lines carry the votes."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_WAV2VEC2, tiny_argv

import hf_ser.training.trainer
from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.arguments import SERTrainingArguments
from hf_ser.training.soft_labels import soft_cross_entropy
from hf_ser.training.trainer import SERTrainer


def test_soft_cross_entropy_on_one_hot_targets_is_the_hard_loss_with_and_without_class_weights():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 1, 3, 2, 3])
    one_hot = F.one_hot(labels, 4).float()
    weights = [0.5, 2.0, 1.0, 1.5]
    assert torch.allclose(soft_cross_entropy(logits, one_hot), F.cross_entropy(logits, labels))
    assert torch.allclose(
        soft_cross_entropy(logits, one_hot, weights), F.cross_entropy(logits, labels, weight=torch.tensor(weights))
    )


def test_soft_cross_entropy_matches_the_hand_computed_value_on_a_soft_target():
    logits = torch.tensor([[0.0, math.log(2.0), 0.0]])  # probabilities 1/4, 1/2, 1/4
    target = torch.tensor([[0.5, 0.5, 0.0]])
    # -(0.5 log 1/4 + 0.5 log 1/2) = 1.5 log 2
    assert soft_cross_entropy(logits, target).item() == pytest.approx(1.5 * math.log(2.0))
    # weights 2, 1, 1: -(1 log 1/4 + 0.5 log 1/2) / (1 + 0.5) = (5/3) log 2
    assert soft_cross_entropy(logits, target, [2.0, 1.0, 1.0]).item() == pytest.approx(5 / 3 * math.log(2.0))


def test_trainer_loss_uses_the_distribution_with_the_models_class_weights(tmp_path):
    torch.manual_seed(0)
    weights = [0.5, 2.0, 1.0, 1.5]
    config = Wav2Vec2SERConfig(
        backbone_config=dict(TINY_WAV2VEC2), head_hidden_sizes=[16], num_labels=4, class_weights=weights
    )
    model = Wav2Vec2SER(config).eval()  # no dropout: the same logits on every call
    trainer = SERTrainer(
        model=model,
        args=SERTrainingArguments(
            output_dir=str(tmp_path), report_to="none", use_cpu=True, eval_strategy="no", load_best_model_at_end=False
        ),
    )
    batch = {"input_values": torch.randn(3, 4000), "attention_mask": torch.ones(3, 4000, dtype=torch.long)}
    labels = torch.tensor([0, 3, 1])
    hard = trainer.compute_loss(model, {**batch, "labels": labels})
    one_hot = trainer.compute_loss(
        model, {**batch, "labels": labels, "label_distribution": F.one_hot(labels, 4).float()}
    )
    with torch.no_grad():
        assert torch.allclose(hard, model(**batch, labels=labels).loss)  # without votes: the model's own loss
    assert torch.allclose(hard, one_hot)
    soft = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.25, 0.75], [0.0, 1.0, 0.0, 0.0]])
    with torch.no_grad():
        logits = model(**batch).logits
    loss = trainer.compute_loss(model, {**batch, "labels": labels, "label_distribution": soft})
    assert torch.allclose(loss, soft_cross_entropy(logits, soft, weights))
    assert not torch.allclose(loss, hard)


# IEMOCAP evaluator names of the tiny corpus's four emotions, and the class each clip's dissenting evaluator ticks.
CATEGORY = {"angry": "Anger", "happy": "Happiness", "neutral": "Neutral", "sad": "Sadness"}
DISSENT = {"angry": "Frustration", "happy": "Neutral", "neutral": "Sadness", "sad": "Neutral"}
CODE = {"angry": "ang", "happy": "hap", "neutral": "neu", "sad": "sad"}


def iemocap_from_tiny_corpus(corpus: Path, root: Path) -> dict[str, list[float]]:
    """The tiny corpus's clips laid out as IEMOCAP (speakers spk01..04 -> Ses01F, Ses01M, Ses02F, Ses02M), three
    evaluators per clip: two tick its emotion; the third ticks it with another class on every other clip, else only
    the other class (for angry: Frustration, outside the labels). Returns each utterance's expected soft target."""
    labels = ["neutral", "happy", "sad", "angry"]
    expected, dialogs = {}, {}
    for index, path in enumerate(sorted(corpus.glob("*/spk*.wav"))):
        emotion, speaker = path.parent.name, int(path.name[3:5])
        session, gender = (speaker + 1) // 2, "FM"[(speaker + 1) % 2]
        dialog = f"Ses0{session}F_impro01"
        utterance = f"{dialog}_{gender}{index:03d}"
        both = index % 2 == 0
        dissent = f"C-E3:\t{CATEGORY[emotion]}; {DISSENT[emotion]};" if both else f"C-E3:\t{DISSENT[emotion]};"
        block = (
            f"[{index:.4f} - {index + 1:.4f}]\t{utterance}\t{CODE[emotion]}\t[2.5000, 3.0000, 3.0000]\n"
            f"C-E1:\t{CATEGORY[emotion]};\t()\nC-E2:\t{CATEGORY[emotion]};\t()\n{dissent}\t()\n\n"
        )
        dialogs.setdefault((session, dialog), []).append(block)
        wav_dir = root / f"Session{session}" / "sentences" / "wav" / dialog
        wav_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, wav_dir / f"{utterance}.wav")
        votes = dict.fromkeys(labels, 0.0)
        votes[emotion] += 3.0 if both else 2.0
        other = DISSENT[emotion].lower().replace("happiness", "happy").replace("sadness", "sad")
        if other in votes:
            votes[other] += 1.0
        expected[utterance] = [votes[label] / sum(votes.values()) for label in labels]
    for (session, dialog), blocks in dialogs.items():
        evaluation_dir = root / f"Session{session}" / "dialog" / "EmoEvaluation"
        evaluation_dir.mkdir(parents=True, exist_ok=True)
        (evaluation_dir / f"{dialog}.txt").write_text(
            "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n" + "".join(blocks)
        )
    return expected


@pytest.mark.slow
def test_soft_label_run_trains_on_votes_scores_hard_labels_and_selects_on_macro_f1(tiny_corpus, tmp_path, monkeypatch):
    from hf_ser.train import main as train_main

    expected = iemocap_from_tiny_corpus(tiny_corpus, tmp_path / "IEMOCAP_full_release")
    seen = []

    def recording_loss(logits, targets, class_weights=None):
        seen.append((targets.detach().clone(), class_weights))
        return soft_cross_entropy(logits, targets, class_weights)

    monkeypatch.setattr(hf_ser.training.trainer, "soft_cross_entropy", recording_loss)
    run = tmp_path / "run"
    argv = tiny_argv(tiny_corpus, run) + [
        "--dataset", "iemocap",
        "--data_dir", str(tmp_path / "IEMOCAP_full_release"),
        "--labels", "neutral", "happy", "sad", "angry",
        "--validation_speakers", "Ses02F",
        "--test_speakers", "Ses02M",
        "--label_targets", "soft",
        "--class_weights", "balanced",
        "--metric_for_best_model", "macro_f1",
        "--bootstrap_samples", "0",
        "--num_train_epochs", "2",
        "--learning_rate", "3e-3",
    ]  # fmt: skip
    results = train_main(argv)

    report = json.loads((run / "data_report.json").read_text())
    assert report["label_votes"] == {
        "label_targets": "soft",
        "items_with_votes": 48,
        "one_hot_without_votes": 0,
        "one_hot_votes_outside_labels": 0,
        "votes_outside_labels": {"frustrated": 12},  # angry clips' dissenting votes
    }
    state = json.loads((run / "trainer_state.json").read_text())
    assert len(seen) == state["global_step"] == 6  # 24 training clips, batches of 8, 2 epochs: every step soft
    train_targets = sorted(
        tuple(round(p, 6) for p in target) for name, target in expected.items() if name.startswith("Ses01")
    )
    assert sorted(tuple(round(p, 6) for p in row.tolist()) for targets, _ in seen for row in targets) == sorted(
        train_targets * 2
    )
    # class weights from the summed vote mass of the training split (every class has 6 clips, unequal mass)
    mass = torch.tensor([sum(t[i] for t in train_targets) for i in range(4)])
    assert seen[0][1] == pytest.approx((24 / (4 * mass)).tolist())
    assert json.loads((run / "config.json").read_text())["class_weights"] == pytest.approx(seen[0][1])
    # selection on validation macro-F1: the best checkpoint is the first evaluation with the highest macro-F1, and
    # the model loaded at the end is that checkpoint (re-scored on validation, hard labels)
    evaluations = [entry for entry in state["log_history"] if "eval_macro_f1" in entry]
    assert len(evaluations) == 2
    best = max(evaluations, key=lambda entry: entry["eval_macro_f1"])
    assert state["best_metric"] == best["eval_macro_f1"]
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best['step']}")
    assert results["eval_macro_f1"] == pytest.approx(best["eval_macro_f1"])
    assert {"test_ua", "test_macro_f1"} <= set(results)
    card = (run / "README.md").read_text()
    assert "- `label_targets`: soft" in card
    assert "Trained on soft labels: 48 item(s) train on annotator votes" in card
