"""Stable fine-tuning switches: an encoder learning rate, a frozen-encoder warm start, and seeds summarised as
mean ± std."""

import json
import sys

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback, Wav2Vec2FeatureExtractor

from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.arguments import SERTrainingArguments
from hf_ser.cli import main as cli_main
from hf_ser.data.collator import SERDataCollator
from hf_ser.experiments.seeds import SUMMARY_METRICS, split_seeds_argv, summarise_seeds
from hf_ser.training.callbacks import FreezeEncoderCallback
from hf_ser.training.lora import apply_lora
from hf_ser.training.trainer import SERTrainer

LABELS = {"id2label": {0: "a", 1: "b", 2: "c"}, "label2id": {"a": 0, "b": 1, "c": 2}}


def tiny_model(backbone) -> Wav2Vec2SER:
    torch.manual_seed(0)
    return Wav2Vec2SER(Wav2Vec2SERConfig(backbone_config=backbone, head_hidden_sizes=[16], **LABELS))


def waveforms(n=8):
    rng = np.random.default_rng(0)
    return Dataset.from_dict(
        {
            "input_values": [rng.standard_normal(3200).astype(np.float32) for _ in range(n)],
            "label": [i % 3 for i in range(n)],
        }
    )


def trainer_for(model, tmp_path, callbacks=(), **kwargs):
    args = SERTrainingArguments(
        output_dir=str(tmp_path),
        report_to="none",
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        weight_decay=0.01,
        disable_tqdm=True,
        **kwargs,
    )
    return SERTrainer(
        model=model,
        args=args,
        train_dataset=waveforms(),
        data_collator=SERDataCollator(Wav2Vec2FeatureExtractor()),
        callbacks=list(callbacks),
    )


def test_encoder_learning_rate_puts_the_encoder_in_its_own_param_groups(tiny_backbone_config, tmp_path):
    model = tiny_model(tiny_backbone_config)
    optimizer = trainer_for(model, tmp_path, encoder_learning_rate=1e-5).create_optimizer()
    encoder = {id(p) for p in model.encoder.parameters()}
    names = {id(p): n for n, p in model.named_parameters()}
    rates = set()
    for group in optimizer.param_groups:
        in_encoder = {id(p) in encoder for p in group["params"]}
        assert len(in_encoder) == 1  # a group is all encoder or all head/pooling
        assert group["lr"] == (1e-5 if in_encoder.pop() else 1e-3)
        rates.add(group["lr"])
        if group["weight_decay"] == 0.0:  # the Trainer's rule: no decay on biases and layer norms
            assert all("bias" in names[id(p)] or "layer_norm" in names[id(p)] for p in group["params"])
    assert rates == {1e-5, 1e-3} and len(optimizer.param_groups) == 4
    in_optimizer = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(in_optimizer) == len({id(p) for p in in_optimizer}) == sum(p.requires_grad for p in model.parameters())


def test_without_encoder_learning_rate_the_trainer_default_optimizer_is_used(tiny_backbone_config, tmp_path):
    optimizer = trainer_for(tiny_model(tiny_backbone_config), tmp_path).create_optimizer()
    assert {group["lr"] for group in optimizer.param_groups} == {1e-3} and len(optimizer.param_groups) == 2


class Snapshots(TrainerCallback):
    def __init__(self):
        self.encoder, self.head = [], []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.encoder.append(model.encoder.encoder.layers[0].attention.q_proj.weight.detach().clone())
        self.head.append(model.head[0].weight.detach().clone())


def test_encoder_is_frozen_for_the_first_steps_then_trains(tiny_backbone_config, tmp_path):
    model = tiny_model(tiny_backbone_config)
    encoder_start = model.encoder.encoder.layers[0].attention.q_proj.weight.detach().clone()
    head_start = model.head[0].weight.detach().clone()
    snapshots = Snapshots()
    trainer = trainer_for(
        model, tmp_path, callbacks=[FreezeEncoderCallback(2), snapshots], max_steps=4, encoder_learning_rate=1e-3
    )
    trainer.train()
    encoder, head = [encoder_start] + snapshots.encoder, [head_start] + snapshots.head
    assert len(encoder) == 5
    assert torch.equal(encoder[0], encoder[1]) and torch.equal(encoder[1], encoder[2])  # steps 1-2: frozen
    assert not torch.equal(encoder[2], encoder[3]) and not torch.equal(encoder[3], encoder[4])  # steps 3-4: train
    assert all(not torch.equal(head[i], head[i + 1]) for i in range(4))  # the head trains throughout
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert id(model.encoder.encoder.layers[0].attention.q_proj.weight) in optimized
    assert not any(p.requires_grad for p in model.encoder.feature_extractor.parameters())  # stays frozen


def test_freeze_encoder_steps_refuses_a_lora_model(tiny_backbone_config, tmp_path):
    model = apply_lora(tiny_model(tiny_backbone_config), {"r": 2})
    trainer = trainer_for(model, tmp_path, callbacks=[FreezeEncoderCallback(1)], max_steps=1)
    with pytest.raises(ValueError, match="freeze_encoder_steps does not combine with `peft`"):
        trainer.train()


def test_seeds_command_line_is_split_and_checked():
    assert split_seeds_argv(["r.yaml", "--seeds", "1", "2", "--learning_rate", "1e-3"]) == (
        [1, 2],
        ["r.yaml", "--learning_rate", "1e-3"],
    )
    with pytest.raises(ValueError, match="give the seeds"):
        split_seeds_argv(["r.yaml"])
    with pytest.raises(ValueError, match="distinct"):
        split_seeds_argv(["r.yaml", "--seeds", "1", "1"])


def test_seeds_summary_names_a_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="seed-3.*eval_results.json"):
        summarise_seeds(tmp_path, [3])


@pytest.mark.slow
def test_seeds_summary_is_the_mean_and_std_of_the_per_seed_results(tiny_train_argv, tmp_path, monkeypatch):
    argv = ["seeds", "--seeds", "1", "2", *tiny_train_argv, "--num_train_epochs", "1"]
    assert cli_main(argv) == 0
    root = tmp_path / "run"
    summary = json.loads((root / "seeds_summary.json").read_text())
    assert summary["seeds"] == [1, 2] and set(summary["metrics"]) == set(SUMMARY_METRICS)
    for key, stats in summary["metrics"].items():
        split = "test" if key.startswith("test") else "eval"
        values = [json.loads((root / f"seed-{s}" / f"{split}_results.json").read_text())[key] for s in (1, 2)]
        assert stats["values"] == values
        assert stats["mean"] == pytest.approx(np.mean(values)) and stats["std"] == pytest.approx(np.std(values, ddof=1))
    table = (root / "seeds_summary.md").read_text()
    ua = summary["metrics"]["test_ua"]
    assert f"| test_ua | {ua['mean']:.4f} ± {ua['std']:.4f} |" in table

    # run again, finished seeds are not trained again; a seed whose run did not finish (no model card) is
    calls = []
    monkeypatch.setattr(sys.modules["hf_ser.train"], "train", lambda *args, **kwargs: calls.append(args[2].output_dir))
    assert cli_main(argv) == 0 and calls == []
    (root / "seed-2" / "README.md").unlink()
    assert cli_main(argv) == 0  # the stub trains nothing: seed-2's earlier result files are summarised
    assert calls == [str(root / "seed-2")]
