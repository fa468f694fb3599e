"""What the Trainer does with hf-ser's models: gradient accumulation k x b is the same update as 1 x kb."""

import pytest
import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainingArguments

from hf_ser import SERCNN, SERCNNConfig, Wav2Vec2SER, Wav2Vec2SERConfig

from conftest import TINY_WAV2VEC2

NO_DROPOUT = {key: 0.0 for key in ("hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout",
                                   "layerdrop", "final_dropout", "mask_time_prob")}


class FixedClips(Dataset):
    """8 one-second waveforms of equal length with labels: every micro-batch split averages the same way."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        self.audio = 0.1 * torch.randn(8, 16000, generator=generator)
        self.labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"input_values": self.audio[index], "labels": self.labels[index]}


def wav2vec2_ser():
    config = Wav2Vec2SERConfig(backbone_config={**TINY_WAV2VEC2, **NO_DROPOUT}, head_hidden_sizes=[16],
                               head_dropout=0.0, head_batch_norm=False, num_labels=4)
    return Wav2Vec2SER(config)


def one_update(build, batch_size: int, accumulation: int, output_dir) -> tuple[dict, float]:
    torch.manual_seed(0)
    model = build()
    args = TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
        max_steps=1, learning_rate=0.5, optim="sgd", lr_scheduler_type="constant", weight_decay=0.0,
        max_grad_norm=0.0, logging_steps=1, report_to="none", use_cpu=True, save_strategy="no", seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=FixedClips())
    trainer.train()
    loss = next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)
    return {name: p.detach().clone() for name, p in model.named_parameters()}, loss


@pytest.mark.parametrize("model_class", [Wav2Vec2SER, SERCNN])
def test_the_trainer_scales_the_loss_of_both_architectures_for_accumulation(model_class):
    # forward(**kwargs) alone would make the Trainer assume the model divides by the batch's item count itself
    assert model_class.accepts_loss_kwargs is False
    model = SERCNN(SERCNNConfig(num_labels=4)) if model_class is SERCNN else wav2vec2_ser()
    trainer = Trainer(model=model, args=TrainingArguments(output_dir="unused", report_to="none", use_cpu=True))
    assert trainer.model_accepts_loss_kwargs is False


@pytest.mark.parametrize("accumulation", [2, 4])
def test_gradient_accumulation_gives_the_update_and_loss_of_one_large_batch(accumulation, tmp_path):
    """k x b against 1 x kb on a model without BatchNorm or dropout (with them, micro-batches see other statistics
    and other masks, so the two differ by design): the same parameters after the step and the same logged loss."""
    build = wav2vec2_ser
    large, large_loss = one_update(build, 8, 1, tmp_path / "large")
    small, small_loss = one_update(build, 8 // accumulation, accumulation, tmp_path / "small")
    torch.manual_seed(0)
    initial = {name: p.detach() for name, p in build().named_parameters()}
    moved = max((large[name] - initial[name]).abs().max().item() for name in large)
    assert moved > 1e-3  # the update is large enough for a scaling error to show
    difference = max((large[name] - small[name]).abs().max().item() for name in large)
    assert difference < 1e-5, f"k={accumulation}: max parameter difference {difference:.3g}"
    assert small_loss == pytest.approx(large_loss, rel=1e-4)
