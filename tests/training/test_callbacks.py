"""Specification of precise BatchNorm (hf_ser/callbacks.py: PreciseBatchNormCallback) and of recipes/base.yaml."""

import json

import numpy as np
import pytest
import torch
from conftest import EMODB_DIR, REPO_ROOT, requires_emodb
from safetensors.torch import load_file
from torch import nn
from transformers import TrainerControl, TrainerState, Wav2Vec2FeatureExtractor, pipeline

from hf_ser.arguments import DataArguments, parse_args
from hf_ser.data.audio import load_audio
from hf_ser.data.collator import SERDataCollator
from hf_ser.data.dataset import build_corpus
from hf_ser.data.transforms import attach_transforms, clean_training_view
from hf_ser.models.configuration_ser_cnn import SERCNNConfig
from hf_ser.models.modeling_ser_cnn import SERCNN
from hf_ser.train import main as train_main
from hf_ser.training.callbacks import PreciseBatchNormCallback, recompute_batch_norm_statistics

SPEAKERS = r"spk(?P<speaker>\d+)_"


class LinearDropoutNorm(nn.Module):
    """Linear -> Dropout(0.9) -> BatchNorm1d: with dropout on, the statistics would be far from the clean ones."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(5, 3)
        self.dropout = nn.Dropout(0.9)
        self.norm = nn.BatchNorm1d(3)

    def forward(self, input_values, labels=None):
        return self.norm(self.dropout(self.linear(input_values)))


def record_inputs(model: nn.Module) -> list[dict]:
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(dict(kwargs)), with_kwargs=True)
    return seen


def stack(examples):
    return {
        "input_values": torch.stack([e["input_values"] for e in examples]),
        "labels": torch.tensor([e["label"] for e in examples]),
    }


def test_statistics_are_the_exact_average_over_the_batches_without_dropout():
    torch.manual_seed(0)
    model = LinearDropoutNorm().train()
    with torch.no_grad():  # running statistics far from the data's, as after many steps on other weights
        model.norm.running_mean.fill_(5.0)
        model.norm.running_var.fill_(9.0)
    data = [{"input_values": torch.randn(5) * 2 + 1, "label": 0} for _ in range(12)]
    seen = record_inputs(model)
    callback = PreciseBatchNormCallback(data, stack, num_batches=5, batch_size=4, seed=3)  # 3 batches a pass: cycles
    control = TrainerControl(should_evaluate=True)
    callback.on_epoch_end(None, TrainerState(global_step=7), control, model=model)

    assert len(seen) == 5 and all("labels" not in kwargs for kwargs in seen)
    with torch.no_grad():
        features = [model.linear(kwargs["input_values"]) for kwargs in seen]
    expected_mean = torch.stack([f.mean(0) for f in features]).mean(0)
    expected_var = torch.stack([f.var(0, unbiased=True) for f in features]).mean(0)
    torch.testing.assert_close(model.norm.running_mean, expected_mean)
    torch.testing.assert_close(model.norm.running_var, expected_var)
    assert model.norm.num_batches_tracked.item() == 5
    # momentum and train mode are restored, so training goes on as before
    assert model.norm.momentum == 0.1 and model.training and model.dropout.training and model.norm.training

    # the same step again (epoch end right after a step-end evaluation) does not recompute; a step without
    # evaluation does nothing
    callback.on_step_end(None, TrainerState(global_step=7), control, model=model)
    callback.on_step_end(None, TrainerState(global_step=8), TrainerControl(should_evaluate=False), model=model)
    assert len(seen) == 5


def test_recomputation_refuses_empty_data_and_skips_models_without_batch_norm():
    with pytest.raises(ValueError, match="gave no batch"):
        recompute_batch_norm_statistics(LinearDropoutNorm(), [], num_batches=2)
    assert recompute_batch_norm_statistics(nn.Linear(2, 2), [], num_batches=2) == 0
    with pytest.raises(ValueError, match=r"precise_bn_batches=0"):
        PreciseBatchNormCallback([], stack, num_batches=0, batch_size=4)


def is_window_of(window: np.ndarray, clip: np.ndarray) -> bool:
    """`window` is a contiguous piece of `clip`, sample for sample."""
    for start in np.flatnonzero(clip[: len(clip) - len(window) + 1] == window[0]):
        if np.array_equal(clip[start : start + len(window)], window):
            return True
    return False


def tiny_cnn(num_labels: int) -> SERCNN:
    torch.manual_seed(0)
    return SERCNN(
        SERCNNConfig(
            num_labels=num_labels, first_conv_channels=4, block_channels=[8, 8], attention_heads=2, attention_hidden=8
        )
    )


def test_statistics_come_from_clean_training_windows_of_the_real_pipeline(tiny_corpus):
    args = DataArguments(
        dataset="audiofolder",
        data_dir=str(tiny_corpus),
        speaker_pattern=SPEAKERS,
        validation_speakers=["03"],
        test_speakers=["04"],
        max_duration_seconds=0.5,
        augmentations=[{"name": "AddGaussianNoise", "p": 1.0, "min_amplitude": 0.05, "max_amplitude": 0.05}],
    )
    splits, labels, _ = build_corpus(args)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True)
    attach_transforms(splits, extractor, args)
    clips = [load_audio(path) for path in splits["train"].with_format(None)["path"]]
    clean = clean_training_view(splits["train"], extractor, args)

    model = tiny_cnn(len(labels)).train()
    seen = record_inputs(model)
    PreciseBatchNormCallback(clean, SERDataCollator(extractor), num_batches=3, batch_size=8).recompute(model, step=0)

    windows = [
        values[: int(mask.sum())].numpy()
        for kwargs in seen
        for values, mask in zip(kwargs["input_values"], kwargs["attention_mask"])
    ]
    assert len(windows) == 24 and all(len(w) == 8000 for w in windows)  # 3 batches of 8 random 0.5 s crops
    assert all(any(is_window_of(w, clip) for clip in clips) for w in windows)
    # the training view itself is augmented, so the check above can tell the two apart
    assert not any(is_window_of(splits["train"][0]["input_values"], clip) for clip in clips)
    assert all(norm.num_batches_tracked.item() == 3 for norm in (model.time_norm, model.blocks[1].norm))
    assert model.training and model.dropout.training


def test_base_recipe_parses_to_its_tuned_settings_with_the_seeds_optimiser():
    model_args, data_args, training_args = parse_args([str(REPO_ROOT / "recipes" / "base.yaml")])
    config = model_args.model_config
    assert model_args.model_type == "ser-cnn" and config["dropout"] == 0.3 and config["aggregate_segments"] is True
    # the front end, pooling and masking chosen on validation speakers (docs/results.md)
    assert (config["feature_type"], config["use_deltas"], config["pool_blocks"]) == ("logmel", True, [0, 1, 2])
    assert (config["time_masks"], config["time_mask_frames"], config["frequency_masks"]) == (2, 20, 2)
    assert config["frequency_mask_bins"] == 6
    assert data_args.max_duration_seconds == 2.0 and data_args.augmentations == []  # speed perturbation: a variant
    assert data_args.validation_fraction == 0.25  # two validation speakers per EmoDB fold
    assert (training_args.learning_rate, training_args.weight_decay) == (1e-3, 1e-5)  # the seed's optimiser
    assert training_args.per_device_train_batch_size == 32 and training_args.num_train_epochs == 100
    assert training_args.early_stopping_patience == 10 and training_args.precise_bn_batches == 4
    # the batches its cross-validation was measured with, not hf-ser's later batch-shape defaults
    assert training_args.train_sampling_strategy == "random" and not training_args.cpu_trim_freed_memory
    assert data_args.pad_to_multiple_of_samples is None


@pytest.mark.slow
def test_base_recipe_trains_with_precise_batch_norm_and_loads_in_a_pipeline(tiny_corpus, tmp_path):
    run = tmp_path / "base"
    argv = [
        str(REPO_ROOT / "recipes" / "base.yaml"),
        "--dataset",
        "audiofolder",
        "--data_dir",
        str(tiny_corpus),
        "--speaker_pattern",
        SPEAKERS,
        "--validation_speakers",
        "03",
        "--test_speakers",
        "04",
        "--model_config",
        json.dumps({"first_conv_channels": 4, "block_channels": [8, 8], "attention_hidden": 8}),
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--precise_bn_batches",
        "2",
        "--output_dir",
        str(run),
        "--disable_tqdm",
        "true",
    ]
    results = train_main(argv)
    assert 0.0 <= results["test_ua"] <= 1.0
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["global_step"] == 3  # 24 training clips in batches of 8
    # the saved BatchNorm layers counted the 2 recomputation batches, not the 3 training steps
    tracked = {k: int(v) for k, v in load_file(run / "model.safetensors").items() if k.endswith("num_batches_tracked")}
    assert len(tracked) == 4 and set(tracked.values()) == {2}
    classifier = pipeline("audio-classification", model=str(run))
    scores = classifier(np.random.default_rng(0).standard_normal(40000).astype(np.float32) * 0.1, top_k=None)
    assert {s["label"] for s in scores} == {"angry", "happy", "neutral", "sad"}


@pytest.mark.slow
@pytest.mark.emodb
@requires_emodb()
def test_base_recipe_runs_on_emodb(tmp_path):
    run = tmp_path / "base"
    results = train_main(
        [
            str(REPO_ROOT / "recipes" / "base.yaml"),
            "--data_dir",
            str(EMODB_DIR),
            "--output_dir",
            str(run),
            "--num_train_epochs",
            "1",
            "--max_train_samples",
            "64",
            "--per_device_train_batch_size",
            "32",
            "--precise_bn_batches",
            "1",
            "--disable_tqdm",
            "true",
        ]
    )
    report = json.loads((run / "data_report.json").read_text())
    assert report["splits"]["validation"]["speakers"] == ["09", "10"] and report["skipped"] == []
    assert results["test_samples"] == 49 + 58 and results["eval_samples"] == 43 + 38
    labels = {
        s["label"]
        for s in pipeline("audio-classification", model=str(run))(
            load_audio(EMODB_DIR / "wav" / "03a01Fa.wav"), top_k=None
        )
    }
    assert labels == {"anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness"}
