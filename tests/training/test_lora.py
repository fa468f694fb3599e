"""LoRA through PEFT: what trains, what is saved, and that adapter-only and merged checkpoints give the same logits."""

import copy
import json

import pytest
import torch
from conftest import REPO_ROOT
from peft import PeftModel
from transformers import AutoModelForAudioClassification, Wav2Vec2FeatureExtractor, pipeline

from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.arguments import parse_args
from hf_ser.cli import main as cli_main
from hf_ser.data.collator import SERDataCollator
from hf_ser.data.dataset import build_corpus
from hf_ser.data.transforms import attach_transforms
from hf_ser.inference.loading import load_lora, merge_lora
from hf_ser.train import main as train_main
from hf_ser.training.lora import BASE_MODEL_DIR, apply_lora, lora_target_modules, prepare_lora
from hf_ser.training.trainer import SERTrainer

LABELS = {"id2label": {0: "a", 1: "b", 2: "c"}, "label2id": {"a": 0, "b": 1, "c": 2}}
SPEC = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0}


def tiny_model(backbone, **kwargs) -> Wav2Vec2SER:
    torch.manual_seed(0)
    return Wav2Vec2SER(Wav2Vec2SERConfig(backbone_config=backbone, head_hidden_sizes=[16], **LABELS, **kwargs))


def batch(batch_size=4, samples=4000):
    generator = torch.Generator().manual_seed(1)
    return {
        "input_values": torch.randn(batch_size, samples, generator=generator),
        "labels": torch.arange(batch_size) % 3,
    }


def trainable(model):
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def test_only_lora_and_head_parameters_train(tiny_backbone_config):
    model = apply_lora(tiny_model(tiny_backbone_config), SPEC)
    names = trainable(model)
    head = sum(p.numel() for p in model.get_base_model().head.parameters()) // 2  # original + trained copy
    hidden, layers, r = tiny_backbone_config["hidden_size"], tiny_backbone_config["num_hidden_layers"], SPEC["r"]
    lora = layers * 4 * r * (hidden + hidden)  # q, k, v, out projections: A (r x in) and B (out x r)
    assert sum(p.numel() for p in names.values()) == lora + head
    assert all("lora_" in n or ".head.modules_to_save." in n for n in names)
    assert {n.split(".")[-4] for n in names if "lora_A" in n} == {"q_proj", "k_proj", "v_proj", "out_proj"}


def test_attentive_pooling_trains_fully_and_ffn_preset_adds_feed_forward(tiny_backbone_config):
    model = apply_lora(
        tiny_model(tiny_backbone_config, pooling="attentive_stats"), {**SPEC, "target_modules": "attention+ffn"}
    )
    names = trainable(model)
    assert any(".attentive_pooling.modules_to_save." in n for n in names)
    assert {n.split(".")[-4] for n in names if "lora_A" in n} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
        "intermediate_dense",
        "output_dense",
    }


def test_whisper_encoder_preset_targets_its_attention_and_mlp():
    whisper = {
        "model_type": "whisper",
        "d_model": 16,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 32,
        "num_mel_bins": 8,
        "max_source_positions": 8,
        "decoder_layers": 1,
    }
    model = apply_lora(tiny_model(whisper), {**SPEC, "target_modules": "attention+ffn"})
    assert {n.split(".")[-4] for n in trainable(model) if "lora_A" in n} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
        "fc1",
        "fc2",
    }


def test_bad_peft_settings_are_named(tiny_backbone_config):
    with pytest.raises(ValueError, match="no preset for encoder type 'wav2vec2-conformer'"):
        lora_target_modules("wav2vec2-conformer")
    with pytest.raises(ValueError, match="target_modules 'everything'"):
        lora_target_modules("wav2vec2", "everything")
    with pytest.raises(ValueError, match="recipe key `peft`.*rank"):
        apply_lora(tiny_model(tiny_backbone_config), {"rank": 4})


def _train_steps(model, steps=3):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        model(**batch()).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def test_training_changes_adapters_and_head_but_not_the_base(tiny_backbone_config):
    model = apply_lora(tiny_model(tiny_backbone_config), SPEC)
    before = copy.deepcopy(model.state_dict())
    _train_steps(model)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("lora_B" in k for k in changed) and any("head.modules_to_save" in k for k in changed)
    frozen = [
        k
        for k in before
        if "lora_" not in k and "modules_to_save" not in k and "running" not in k and "num_batches" not in k
    ]
    assert len(frozen) > 20 and not changed & set(frozen)  # encoder weights and the original head are untouched


def test_adapter_checkpoint_and_merged_model_give_the_same_logits(tiny_backbone_config, tmp_path):
    run = tmp_path / "run"
    model = prepare_lora(tiny_model(tiny_backbone_config), SPEC, run)  # writes run/base_model
    _train_steps(model)
    model.save_pretrained(run)  # what Trainer.save_model does with a PeftModel
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(run)
    files = {p.name for p in run.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", BASE_MODEL_DIR} <= files
    assert "model.safetensors" not in files
    assert json.loads((run / "adapter_config.json").read_text())["base_model_name_or_path"].endswith(BASE_MODEL_DIR)

    inputs = batch()["input_values"]
    with torch.no_grad():
        expected = model(input_values=inputs).logits
        by_hand = PeftModel.from_pretrained(AutoModelForAudioClassification.from_pretrained(run / BASE_MODEL_DIR), run)
        torch.testing.assert_close(by_hand.eval()(input_values=inputs).logits, expected)
        torch.testing.assert_close(load_lora(run)(input_values=inputs).logits, expected)
        merged_dir = merge_lora(run, tmp_path / "merged")
        merged = AutoModelForAudioClassification.from_pretrained(merged_dir).eval()
        assert not any("lora" in name for name in merged.state_dict())
        torch.testing.assert_close(merged(input_values=inputs).logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_lora_recipe_trains_saves_an_adapter_and_exports_a_pipeline_model(tiny_train_argv, tmp_path):
    argv = tiny_train_argv + ["--peft", json.dumps({**SPEC, "target_modules": "attention"})]
    results = train_main(argv)
    run = tmp_path / "run"
    assert {"adapter_config.json", "adapter_model.safetensors", "test_results.json"} <= {p.name for p in run.iterdir()}
    config = json.loads((run / "run_config.json").read_text())
    assert config["parameters"]["trainable"] < config["parameters"]["total"] / 10

    # the adapter-only checkpoint reproduces the trained model's test loss
    model_args, data_args, training_args = parse_args(argv)
    splits, _, _ = build_corpus(data_args, seed=training_args.seed)
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(run)
    attach_transforms(splits, extractor, data_args)
    trainer = SERTrainer(
        model=load_lora(run), args=training_args, data_collator=SERDataCollator(extractor), eval_dataset=splits["test"]
    )
    reloaded = trainer.evaluate(metric_key_prefix="test")
    assert reloaded["test_loss"] == pytest.approx(results["test_loss"], rel=1e-5)

    with pytest.raises(SystemExit) as usage_error:  # argparse: the output folder is missing
        cli_main(["merge-lora", str(run)])
    assert usage_error.value.code == 2
    assert cli_main(["merge-lora", str(run), str(tmp_path / "merged")]) == 0
    classifier = pipeline("audio-classification", model=str(tmp_path / "merged"))
    assert {p["label"] for p in classifier(torch.randn(16000).numpy(), top_k=None)} == {
        "angry",
        "happy",
        "neutral",
        "sad",
    }


def test_lora_recipe_section_parses_into_a_lora_config():
    model_args, _, training_args = parse_args([str(REPO_ROOT / "recipes" / "wav2vec2-large-lora.yaml")])
    assert model_args.peft == {"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": "attention"}
    assert training_args.encoder_learning_rate == 1e-4 and training_args.train_sampling_strategy == "group_by_length"
    assert training_args.length_column_name == "duration"
