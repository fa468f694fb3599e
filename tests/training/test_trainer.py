"""`SERTrainer`'s batch transforms: every training batch passes through them on its way to the model, no
evaluation or prediction batch does, and a recipe turns them on for a real training run."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_WAV2VEC2
from transformers import Wav2Vec2FeatureExtractor

from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.arguments import SERTrainingArguments
from hf_ser.cli import main as cli_main
from hf_ser.data.batch_augment import build_batch_augmenter
from hf_ser.data.collator import SERDataCollator
from hf_ser.train import main as train_main
from hf_ser.training.trainer import SERTrainer

LENGTHS = [8000, 6000, 4000, 7000, 5000, 3000]


def clips() -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {"input_values": (0.1 * rng.standard_normal(n)).astype(np.float32), "label": i % 4}
        for i, n in enumerate(LENGTHS)
    ]


class Recording:
    """The recipe's batch augmenter, keeping what it was given and what it returned."""

    def __init__(self, augmenter):
        self.augmenter, self.seen = augmenter, []

    def generator(self, *args):
        return self.augmenter.generator(*args)

    def __call__(self, batch, generator):
        out = self.augmenter(batch, generator)
        self.seen.append((batch["input_values"].clone(), out["input_values"].clone()))
        return out


def test_batch_transforms_reach_every_training_batch_and_no_evaluation_batch(tmp_path):
    torch.manual_seed(0)
    config = Wav2Vec2SERConfig(backbone_config=dict(TINY_WAV2VEC2), head_hidden_sizes=[8], num_labels=4)
    model = Wav2Vec2SER(config)
    model_inputs = []  # (training?, input_values) of every forward
    model.register_forward_pre_hook(
        lambda module, args, kwargs: model_inputs.append((module.training, kwargs["input_values"].clone())),
        with_kwargs=True,
    )
    recording = Recording(
        build_batch_augmenter([{"name": "AddGaussianSNR", "p": 1.0, "min_snr_db": 0.0, "max_snr_db": 0.0}])
    )
    args = SERTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=3,
        per_device_eval_batch_size=3,
        num_train_epochs=1,
        eval_strategy="epoch",
        save_strategy="no",
        load_best_model_at_end=False,
        metric_for_best_model="loss",
        greater_is_better=False,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        precise_bn_batches=0,
        seed=0,
    )
    extractor = Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True)
    collator = SERDataCollator(extractor)
    trainer = SERTrainer(
        model=model,
        args=args,
        train_dataset=clips(),
        eval_dataset=clips(),
        data_collator=collator,
        batch_augmenter=recording,
    )
    trainer.train()
    trainer.predict(clips())

    training = [values for is_training, values in model_inputs if is_training]
    evaluation = [values for is_training, values in model_inputs if not is_training]
    assert len(recording.seen) == len(training) == trainer.state.global_step == 2  # 1 epoch of 2 batches
    for (before, after), fed in zip(recording.seen, training):
        torch.testing.assert_close(fed, after)  # the model trained on the augmented batch
        assert not torch.equal(after, before)
    clean = [collator(clips()[start : start + 3])["input_values"] for start in (0, 3)]
    assert len(evaluation) == 4  # 1 evaluation + 1 prediction, 2 batches each: all exactly the collated clips
    for index, values in enumerate(evaluation):
        torch.testing.assert_close(values, clean[index % 2], rtol=0, atol=0)
    # draws are keyed by (seed, process, step, micro-batch): another trainer run would see the same noise
    keys = [
        recording.generator(torch.device("cpu"), 0, step, micro).initial_seed() for step in (0, 1) for micro in (0, 1)
    ]
    assert len(set(keys)) == 4


@pytest.mark.slow
def test_a_recipe_trains_with_batch_transforms(tiny_train_argv, tmp_path):
    specs = [
        {"name": "AddGaussianSNR", "p": 0.5, "min_snr_db": 10.0, "max_snr_db": 30.0},
        {"name": "Gain", "p": 0.5, "min_gain_db": -6.0, "max_gain_db": 6.0},
        {"name": "TimeMask", "p": 0.5, "max_band_part": 0.1},
        {"name": "Mixup", "p": 0.5, "alpha": 0.4},  # the loss then takes mixed label distributions
    ]
    argv = tiny_train_argv + ["--num_train_epochs", "1", "--precise_bn_batches", "0", "--bootstrap_samples", "0"]
    argv += ["--batch_augmentations", json.dumps(specs)]
    results = train_main(argv)
    assert 0.0 <= results["test_ua"] <= 1.0 and np.isfinite(results["eval_loss"])
    run_config = json.loads((tmp_path / "run" / "run_config.json").read_text())
    assert run_config["data_args"]["batch_augmentations"] == specs
    assert "AddGaussianSNR" in (tmp_path / "run" / "README.md").read_text()  # the model card says how it was trained


def test_a_bad_batch_augmentation_stops_the_command_with_one_line(tiny_train_argv, capsys, tmp_path):
    argv = tiny_train_argv + ["--batch_augmentations", '[{"name": "Gain", "max_gain": 3}]']
    assert cli_main(["train", *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "batch_augmentations[0] (Gain): unknown key 'max_gain'" in error
    assert not (tmp_path / "run").exists()  # refused before any corpus or model work
