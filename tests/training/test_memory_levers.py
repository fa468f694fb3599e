"""Memory levers as recipe switches: frozen feature encoder, gradient checkpointing, bf16 autocast with an fp32 loss,
length-grouped batches from the precomputed `duration` column, and the duration caps."""

import copy
import json

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2FeatureExtractor

from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.arguments import DataArguments, SERTrainingArguments
from hf_ser.data.collator import SERDataCollator
from hf_ser.data.dataset import build_corpus
from hf_ser.data.sampler import EpochLengthGroupedSampler
from hf_ser.data.transforms import attach_transforms
from hf_ser.train import main as train_main
from hf_ser.training.trainer import SERTrainer

LABELS = {"id2label": {0: "a", 1: "b", 2: "c"}, "label2id": {"a": 0, "b": 1, "c": 2}}


def tiny_model(backbone, **kwargs) -> Wav2Vec2SER:
    torch.manual_seed(0)
    return Wav2Vec2SER(Wav2Vec2SERConfig(backbone_config=backbone, head_hidden_sizes=[16], **LABELS, **kwargs))


def batch(batch_size=4, samples=4000):
    generator = torch.Generator().manual_seed(1)
    waveforms = torch.randn(batch_size, samples, generator=generator)
    mask = torch.ones(batch_size, samples, dtype=torch.long)
    mask[0, samples // 2 :] = 0
    return {"input_values": waveforms, "attention_mask": mask, "labels": torch.arange(batch_size) % 3}


def test_frozen_feature_encoder_gets_no_gradient_and_does_not_change(tiny_backbone_config):
    model = tiny_model(tiny_backbone_config)  # freeze_feature_encoder defaults to True (the seed's)
    conv = model.encoder.feature_extractor
    before = copy.deepcopy(conv.state_dict())
    layer_before = model.encoder.encoder.layers[0].attention.q_proj.weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    model(**batch()).loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in conv.parameters())
    optimizer.step()
    assert all(torch.equal(before[k], v) for k, v in conv.state_dict().items())
    assert not torch.equal(layer_before, model.encoder.encoder.layers[0].attention.q_proj.weight)


def _loss_and_grads(model):
    torch.manual_seed(3)  # same dropout masks in both models; checkpointing replays the RNG state on recompute
    loss = model(**batch()).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_backbone_config):
    plain = tiny_model(tiny_backbone_config).train()
    checkpointed = copy.deepcopy(plain).train()
    # what `gradient_checkpointing: true` makes the Trainer call (transformers >= 5.x names it activation_*)
    getattr(checkpointed, "activation_checkpointing_enable", checkpointed.gradient_checkpointing_enable)()
    assert checkpointed.encoder.encoder.gradient_checkpointing
    assert all(layer.gradient_checkpointing for layer in checkpointed.encoder.encoder.layers)
    calls = []
    # transformers checkpoints a layer's `forward`, so a module inside the layer shows the recompute
    checkpointed.encoder.encoder.layers[0].attention.register_forward_hook(lambda *_: calls.append(1))
    loss, grads = _loss_and_grads(plain)
    loss_ckpt, grads_ckpt = _loss_and_grads(checkpointed)
    assert len(calls) == 2  # the layer ran again during backward: its activations were not kept
    torch.testing.assert_close(loss_ckpt, loss)
    assert grads.keys() == grads_ckpt.keys() and len(grads) > 10
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_autocast_keeps_the_loss_in_float32_and_trains(tiny_backbone_config):
    model = tiny_model(tiny_backbone_config).train()
    head_before = model.head[0].weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(**batch())
    assert output.logits.dtype == torch.bfloat16  # autocast is really on
    assert output.loss.dtype == torch.float32 and torch.isfinite(output.loss)
    output.loss.backward()
    optimizer.step()
    assert model.head[0].weight.dtype == torch.float32  # master weights stay fp32
    assert not torch.equal(head_before, model.head[0].weight)


def _corpus(tiny_corpus, **kwargs):
    args = DataArguments(
        dataset="audiofolder",
        data_dir=str(tiny_corpus),
        speaker_pattern=r"spk(?P<speaker>\d+)_",
        validation_speakers=["03"],
        test_speakers=["04"],
        **kwargs,
    )
    splits, _, _ = build_corpus(args)
    return attach_transforms(splits, Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True), args)


def _padded_samples(tiny_corpus, tiny_backbone_config, tmp_path, strategy, seed, **kwargs):
    splits = _corpus(tiny_corpus, max_duration_seconds=10.0)  # no crop: the clips' own lengths (1.5 s to 3 s)
    args = SERTrainingArguments(
        **kwargs,
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        report_to="none",
        eval_strategy="no",
        load_best_model_at_end=False,
        train_sampling_strategy=strategy,
        seed=seed,
        dataloader_pin_memory=False,
    )
    extractor = Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True)
    trainer = SERTrainer(
        model=tiny_model(tiny_backbone_config),
        args=args,
        train_dataset=splits["train"],
        data_collator=SERDataCollator(extractor),
    )
    batches = list(trainer.get_train_dataloader())
    assert sum(len(b["labels"]) for b in batches) == len(splits["train"]) == 24
    return sum(int((b["attention_mask"] == 0).sum()) for b in batches)


def test_length_grouped_batches_pad_less_than_random_ones(tiny_corpus, tiny_backbone_config, tmp_path):
    # 24 clips, batches of 2: hf-ser's default sorts the whole epoch; the Trainer's LengthGroupedSampler
    # (`length_grouping: megabatch`) sorts megabatches of 6 clips by duration
    padded = {
        grouping: [
            _padded_samples(tiny_corpus, tiny_backbone_config, tmp_path, "group_by_length", s, length_grouping=grouping)
            for s in range(2)
        ]
        for grouping in ("epoch", "megabatch")
    }
    random = [_padded_samples(tiny_corpus, tiny_backbone_config, tmp_path, "random", s) for s in range(2)]
    assert sum(padded["megabatch"]) < 0.7 * sum(random), (padded, random)
    assert sum(padded["epoch"]) < 0.5 * sum(padded["megabatch"]), (padded, random)


def test_group_by_length_groups_over_the_whole_epoch_and_evaluation_keeps_the_dataset_order(
    tiny_corpus, tiny_backbone_config, tmp_path
):
    splits = _corpus(tiny_corpus, max_duration_seconds=10.0)
    args = SERTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=3,
        report_to="none",
        train_sampling_strategy="group_by_length",
    )
    assert args.length_grouping == "epoch"
    extractor = Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True)
    trainer = SERTrainer(
        model=tiny_model(tiny_backbone_config),
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=SERDataCollator(extractor, pad_to_multiple_of=8000),
        length_cap=10.0,
        length_bucket=0.5,
    )
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, EpochLengthGroupedSampler) and sampler.batch_size == 6  # one optimizer step's clips
    assert sorted(trainer.get_train_dataloader().batch_sampler.sampler) == list(range(24))
    # the Trainer would length-group evaluation too; per-clip predictions are written in dataset order
    for split in ("validation", "test"):
        batches = list(trainer.get_test_dataloader(splits[split]))
        lengths = torch.cat([b["attention_mask"].sum(-1) for b in batches]).tolist()
        durations = splits[split].with_format(None)["duration"]
        assert lengths == [round(d * 16000) for d in durations]
        assert all(b["attention_mask"].shape[-1] % 8000 == 0 for b in batches)


def test_length_grouping_names_a_missing_length_column(tiny_corpus, tiny_backbone_config, tmp_path):
    splits = _corpus(tiny_corpus)
    args = SERTrainingArguments(
        output_dir=str(tmp_path),
        report_to="none",
        eval_strategy="no",
        load_best_model_at_end=False,
        train_sampling_strategy="group_by_length",
        length_column_name="length",
    )
    trainer = SERTrainer(
        model=tiny_model(tiny_backbone_config),
        args=args,
        train_dataset=splits["train"],
        data_collator=SERDataCollator(Wav2Vec2FeatureExtractor()),
    )
    with pytest.raises(ValueError, match="length_column_name 'length'.*duration"):
        trainer.get_train_dataloader()


def test_duration_caps_crop_training_and_evaluation_clips(tiny_corpus):
    splits = _corpus(tiny_corpus, max_duration_seconds=0.75, eval_max_duration_seconds=1.25)
    uncapped = _corpus(tiny_corpus, max_duration_seconds=0.75)
    durations = splits["validation"].with_format(None)["duration"]
    assert min(durations) > 1.25  # every validation clip is longer than the cap
    assert {len(splits["train"][i]["input_values"]) for i in range(6)} == {12_000}
    assert {len(splits["validation"][i]["input_values"]) for i in range(6)} == {20_000}
    assert [len(uncapped["validation"][i]["input_values"]) for i in range(6)] == [
        round(d * 16_000) for d in durations[:6]
    ]


@pytest.mark.slow
def test_memory_and_stability_switches_train_end_to_end(tiny_train_argv, tmp_path):
    results = train_main(
        tiny_train_argv
        + [
            "--gradient_checkpointing",
            "true",
            "--bf16",
            "true",
            "--use_cpu",
            "true",
            "--train_sampling_strategy",
            "group_by_length",
            "--encoder_learning_rate",
            "1e-4",
            "--freeze_encoder_steps",
            "2",
            "--max_grad_norm",
            "1.0",
            "--warmup_steps",
            "1",
            "--num_train_epochs",
            "2",
        ]
    )
    run = tmp_path / "run"
    assert json.loads((run / "test_results.json").read_text())["test_samples"] == 12
    assert np.isfinite(results["eval_loss"]) and np.isfinite(results["test_loss"])
    config = json.loads((run / "run_config.json").read_text())["training_args"]
    assert config["bf16"] is True and config["train_sampling_strategy"] == "group_by_length"
