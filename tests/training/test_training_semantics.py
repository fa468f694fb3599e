"""What training does with hf-ser's models: gradient accumulation k x b is the update of 1 x kb; BatchNorm gets
batches it can normalise and precise statistics by default; the training data is what the report says."""

import pytest
import torch
from conftest import TINY_WAV2VEC2, corpus_args
from torch.utils.data import Dataset
from transformers import Trainer, TrainingArguments

from hf_ser import SERCNN, SERCNNConfig, Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.training.callbacks import (
    DEFAULT_PRECISE_BN_BATCHES,
    check_batch_norm_batch_size,
    rank_windows,
    recompute_batch_norm_statistics,
    resolve_precise_bn_batches,
)

NO_DROPOUT = {
    key: 0.0
    for key in (
        "hidden_dropout",
        "attention_dropout",
        "activation_dropout",
        "feat_proj_dropout",
        "layerdrop",
        "final_dropout",
        "mask_time_prob",
    )
}


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
    config = Wav2Vec2SERConfig(
        backbone_config={**TINY_WAV2VEC2, **NO_DROPOUT},
        head_hidden_sizes=[16],
        head_dropout=0.0,
        head_batch_norm=False,
        num_labels=4,
    )
    return Wav2Vec2SER(config)


def one_update(build, batch_size: int, accumulation: int, output_dir) -> tuple[dict, float]:
    torch.manual_seed(0)
    model = build()
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=0.5,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        seed=0,
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


# ---------------------------------------------------------------- BatchNorm


def seed_head_model(batch_norm: bool = True):
    config = Wav2Vec2SERConfig(
        backbone_config=dict(TINY_WAV2VEC2), head_hidden_sizes=[16], num_labels=4, head_batch_norm=batch_norm
    )
    return Wav2Vec2SER(config)


def test_a_batch_norm_model_refuses_training_batches_of_one():
    with pytest.raises(ValueError, match="per_device_train_batch_size=1 with a BatchNorm model"):
        check_batch_norm_batch_size(seed_head_model(), 1)
    check_batch_norm_batch_size(seed_head_model(), 2)
    check_batch_norm_batch_size(seed_head_model(batch_norm=False), 1)


def test_precise_batch_norm_is_on_by_default_exactly_when_the_model_has_batch_norm():
    assert resolve_precise_bn_batches(None, seed_head_model()) == DEFAULT_PRECISE_BN_BATCHES > 0
    assert resolve_precise_bn_batches(None, SERCNN(SERCNNConfig(num_labels=4))) == DEFAULT_PRECISE_BN_BATCHES
    assert resolve_precise_bn_batches(None, seed_head_model(batch_norm=False)) == 0
    assert resolve_precise_bn_batches(0, seed_head_model()) == 0  # explicitly off
    assert resolve_precise_bn_batches(3, seed_head_model()) == 3


def test_precise_batch_norm_ranks_take_disjoint_windows_of_one_shuffle():
    shares = [rank_windows(10, torch.Generator().manual_seed(4), rank, 3) for rank in range(3)]
    assert sorted(sum(shares, [])) == list(range(10))
    assert [len(share) for share in shares] == [4, 3, 3]


def test_precise_batch_norm_feeds_a_bf16_model_bf16_inputs():
    model = seed_head_model().to(torch.bfloat16)
    batches = [
        {
            "input_values": torch.randn(4, 8000),
            "attention_mask": torch.ones(4, 8000, dtype=torch.long),
            "labels": torch.zeros(4, dtype=torch.long),
        }
    ]
    assert recompute_batch_norm_statistics(model, batches, 2) == 1
    statistics = model.head[1].running_var
    assert statistics.dtype == torch.bfloat16 and not torch.equal(statistics, torch.ones_like(statistics))


# ---------------------------------------------------------------- data the Trainer sees


def test_max_train_samples_draws_a_seeded_random_subset_and_the_report_counts_it(tiny_corpus):
    from hf_ser.data.dataset import build_corpus

    splits, _, report = build_corpus(
        corpus_args(tiny_corpus, validation_speakers=["03"], test_speakers=["04"], max_train_samples=8), seed=3
    )
    again, _, _ = build_corpus(
        corpus_args(tiny_corpus, validation_speakers=["03"], test_speakers=["04"], max_train_samples=8), seed=3
    )
    assert len(splits["train"]) == 8 and splits["train"]["path"] == again["train"]["path"]
    assert set(splits["train"]["speaker"]) == {"01", "02"}  # not the first 8 rows (all of speaker 01)
    assert report.splits["train"]["items"] == 8
    assert sum(report.splits["train"]["per_label"].values()) == 8
    assert any("random 8 of the 24 training clips" in note["reason"] for note in report.notes)


def test_pad_to_max_duration_marks_the_padding_as_padding(tiny_corpus):
    from transformers import Wav2Vec2FeatureExtractor

    from hf_ser.data.collator import SERDataCollator
    from hf_ser.data.dataset import build_corpus
    from hf_ser.data.transforms import AudioTransform

    args = corpus_args(
        tiny_corpus,
        validation_speakers=["03"],
        test_speakers=["04"],
        max_duration_seconds=5.0,
        pad_to_max_duration=True,
    )
    splits, _, _ = build_corpus(args)
    real = [round(16000 * d) for d in splits["train"]["duration"][:4]]
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    splits["train"].set_transform(AudioTransform(extractor, args, train=True))
    batch = SERDataCollator(extractor)([splits["train"][i] for i in range(4)])
    assert batch["input_values"].shape == (4, 80000)
    assert batch["attention_mask"].sum(-1).tolist() == pytest.approx(real, abs=2)
    assert max(real) < 80000
