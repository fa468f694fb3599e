"""Several processes: accelerate launch configs, data-parallel training on CPU processes, SyncBatchNorm, LayerDrop.

The slow tests launch `tests/distributed_worker.py` with `accelerate launch --multi_gpu --num_processes 2` (gloo on
CPU; `--cpu` would start ONE process) and read what each rank recorded (see the worker's docstring).
"""

import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType
from conftest import REPO_ROOT, TINY_WAV2VEC2
from distributed_worker import launch as _launch
from transformers import TrainingArguments

from hf_ser.arguments import SERTrainingArguments
from hf_ser.models.configuration_wav2vec2_ser import Wav2Vec2SERConfig
from hf_ser.models.modeling_wav2vec2_ser import SafeBatchNorm1d, Wav2Vec2SER
from hf_ser.train import main as train_main
from hf_ser.training.distributed import (
    DEEPSPEED_CPU_INFERENCE_OP,
    prepare_model_for_processes,
    skip_deepspeed_cpu_inference_op,
)

CONFIG_DIR = REPO_ROOT / "accelerate_configs"
EXPECTED_CONFIGS = {
    "single_gpu.yaml": DistributedType.NO,
    "multi_gpu.yaml": DistributedType.MULTI_GPU,
    "multi_node.yaml": DistributedType.MULTI_GPU,
    "deepspeed_zero2.yaml": DistributedType.DEEPSPEED,
    "deepspeed_zero3.yaml": DistributedType.DEEPSPEED,
    "fsdp.yaml": DistributedType.FSDP,
}
TRAIN_CLIPS = 24  # tiny_corpus: speakers 01 and 02 train, 4 emotions x 3 clips each
PER_DEVICE_BATCH = 4


# ---------------------------------------------------------------- launch configs


@pytest.mark.parametrize("name", sorted(EXPECTED_CONFIGS))
def test_accelerate_config_loads_with_accelerates_own_loader(name):
    config = load_config_from_file(str(CONFIG_DIR / name))
    assert config.distributed_type == EXPECTED_CONFIGS[name]
    assert config.mixed_precision == "no"  # precision comes from the recipe (bf16: true), not the launcher
    assert config.num_processes >= 1 and config.num_machines >= 1


def test_deepspeed_configs_set_their_zero_stage_and_leave_batch_settings_to_the_trainer():
    for name, stage in (("deepspeed_zero2.yaml", 2), ("deepspeed_zero3.yaml", 3)):
        deepspeed = load_config_from_file(str(CONFIG_DIR / name)).deepspeed_config
        assert deepspeed["zero_stage"] == stage
        # Fixed values here would clash with the recipe's; absent means "auto", filled by the Trainer.
        assert "gradient_accumulation_steps" not in deepspeed and "gradient_clipping" not in deepspeed
        assert deepspeed["zero3_init_flag"] is False
    assert load_config_from_file(str(CONFIG_DIR / "deepspeed_zero3.yaml")).deepspeed_config["zero3_save_16bit_model"]


def test_multi_node_config_names_the_main_process_and_totals_processes_over_machines():
    config = load_config_from_file(str(CONFIG_DIR / "multi_node.yaml"))
    assert config.num_machines == 2 and config.main_process_ip and config.main_process_port
    assert config.num_processes % config.num_machines == 0 and config.num_processes > config.num_machines


# ---------------------------------------------------------------- argument and model preparation (no launch)


def test_processes_launched_without_gpu_train_on_cpu(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    # TrainingArguments' own __post_init__ would join the (absent) process group; `use_cpu` is decided before it
    monkeypatch.setattr(TrainingArguments, "__post_init__", lambda self: None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert SERTrainingArguments(output_dir=str(tmp_path)).use_cpu is True
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert SERTrainingArguments(output_dir=str(tmp_path)).use_cpu is False


def _tiny_model(layerdrop: float = 0.1) -> Wav2Vec2SER:
    config = Wav2Vec2SERConfig(
        backbone_config={**TINY_WAV2VEC2, "layerdrop": layerdrop}, num_labels=4, head_hidden_sizes=[16, 8]
    )
    return Wav2Vec2SER(config)


def _process_args(world_size=2, activation_checkpointing=False, find_unused=None, sync_batch_norm=False, device="cpu"):
    return SimpleNamespace(
        world_size=world_size,
        activation_checkpointing=activation_checkpointing,
        ddp_find_unused_parameters=find_unused,
        sync_batch_norm=sync_batch_norm,
        device=torch.device(device),
    )


def _layerdrops(model):
    return model.config.backbone_config.layerdrop, model.encoder.config.layerdrop


def test_layerdrop_is_switched_off_for_ddp_with_activation_checkpointing(caplog):
    model = _tiny_model(layerdrop=0.1)
    with caplog.at_level(logging.WARNING, logger="hf_ser.training.distributed"):
        prepare_model_for_processes(model, _process_args(activation_checkpointing=True))
    assert _layerdrops(model) == (0.0, 0.0)
    assert "LayerDrop switched off" in caplog.text and "30113" in caplog.text
    model = _tiny_model(layerdrop=0.1)
    prepare_model_for_processes(model, _process_args(find_unused=False))
    assert _layerdrops(model) == (0.0, 0.0)


@pytest.mark.parametrize(
    "args",
    [_process_args(world_size=1, activation_checkpointing=True), _process_args()],
    ids=["one-process", "ddp-finds-unused-parameters"],
)
def test_layerdrop_is_kept_where_ddp_copes_with_it(args):
    model = _tiny_model(layerdrop=0.1)
    assert prepare_model_for_processes(model, args) is model
    assert _layerdrops(model) == (0.1, 0.1)


def test_sync_batch_norm_is_refused_on_cpu_processes_with_the_reason():
    with pytest.raises(ValueError, match="sync_batch_norm.*GPUs only"):
        prepare_model_for_processes(_tiny_model(), _process_args(sync_batch_norm=True))


def test_sync_batch_norm_converts_the_head_and_checkpoints_keep_their_keys():
    model = _tiny_model()
    keys = set(model.state_dict())
    # the conversion itself does not touch the device, so a GPU run's conversion can be checked here
    converted = prepare_model_for_processes(model, _process_args(sync_batch_norm=True, device="cuda"))
    norms = [m for m in converted.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
    assert set(converted.state_dict()) == keys
    plain = _tiny_model()
    plain.load_state_dict(converted.state_dict(), strict=True)
    assert any(isinstance(m, SafeBatchNorm1d) for m in plain.modules())
    single = prepare_model_for_processes(_tiny_model(), _process_args(world_size=1, sync_batch_norm=True))
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in single.modules())  # batch-of-one behaviour kept


# ---------------------------------------------------------------- real multi-process runs


@pytest.fixture(scope="module")
def run_argv(tiny_corpus):
    return [
        "--dataset",
        "audiofolder",
        "--data_dir",
        str(tiny_corpus),
        "--speaker_pattern",
        r"spk(?P<speaker>\d+)_",
        "--validation_speakers",
        "03",
        "--test_speakers",
        "04",
        "--backbone_config",
        json.dumps(TINY_WAV2VEC2),
        "--head_hidden_sizes",
        "16",
        "8",
        "--max_duration_seconds",
        "1.0",
        "--num_train_epochs",
        "2",
        "--per_device_train_batch_size",
        str(PER_DEVICE_BATCH),
        "--per_device_eval_batch_size",
        "8",
        "--learning_rate",
        "1e-3",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--seed",
        "7",
        "--logging_strategy",
        "steps",
        "--logging_steps",
        "1",
        "--save_total_limit",
        "1",
    ]


@pytest.fixture(scope="module")
def ddp_run(run_argv, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    ranks = _launch(
        root / "records", run_argv + ["--output_dir", str(root / "run")], "--multi_gpu", "--num_processes", "2"
    )
    return ranks, root / "run"


@pytest.fixture(scope="module")
def single_run(run_argv, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("single") / "run"
    train_main(run_argv + ["--output_dir", str(output_dir)])
    return output_dir


def _logged_losses(output_dir):
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.mark.slow
def test_two_cpu_processes_train_one_data_parallel_model(ddp_run):
    ranks, _ = ddp_run
    for rank, record in enumerate(ranks):
        assert (record["process_index"], record["world_size"]) == (rank, 2)
        assert record["parallel_mode"] == "ParallelMode.DISTRIBUTED"
    # the sampler splits the data: 24 clips / (4 per process x 2 processes) = 3 optimizer steps per epoch
    steps_per_epoch = math.ceil(TRAIN_CLIPS / (PER_DEVICE_BATCH * 2))
    assert [s["step"] for s in ranks[0]["steps"]] == list(range(1, 2 * steps_per_epoch + 1))
    # gradients are averaged: after every step both ranks hold bit-identical weights, and the weights move
    hashes = [[s["parameters"] for s in record["steps"]] for record in ranks]
    assert hashes[0] == hashes[1]
    assert len(set(hashes[0])) == len(hashes[0])


@pytest.mark.slow
def test_batch_norm_statistics_stay_per_process_without_sync_batch_norm(ddp_run):
    ranks, _ = ddp_run
    # each rank normalises over its own 4 clips, so its running statistics differ from the other rank's
    assert all(
        a["batch_norm_statistics"] != b["batch_norm_statistics"] for a, b in zip(ranks[0]["steps"], ranks[1]["steps"])
    )


def _first_epoch_mean(losses):
    half = len(losses) // 2
    return sum(losses[:half]) / half


@pytest.mark.slow
def test_one_process_takes_twice_the_steps_and_logs_loss_on_the_same_scale(ddp_run, single_run):
    single, ddp = _logged_losses(single_run), _logged_losses(ddp_run[1])
    assert json.loads((single_run / "trainer_state.json").read_text())["global_step"] == 2 * len(ddp) == 12
    # cross-entropy of 4 classes starts near ln 4 = 1.39 in both runs; scaling by world size would double it
    assert 0.7 < _first_epoch_mean(ddp) / _first_epoch_mean(single) < 1.4
    assert _first_epoch_mean(ddp) < 1.5 * math.log(4)


@pytest.mark.slow
def test_only_rank_zero_writes_results_and_checkpoints(ddp_run):
    ranks, output_dir = ddp_run
    files_rank1 = [path for event, path in ranks[1]["writes"] if event != "os.mkdir"]
    assert files_rank1 == [], f"rank 1 wrote {files_rank1}"
    opened = [path for event, path in ranks[0]["writes"] if event == "open"]
    for name in (
        "data_report.json",
        "run_config.json",
        "eval_results.json",
        "test_results.json",
        "confusion_matrix.json",
        "confusion_matrix.png",
        "config.json",
    ):
        assert opened.count(name) == 1, name
    for path in output_dir.glob("*.json"):
        json.loads(path.read_text())  # complete, not interleaved
    assert json.loads((output_dir / "test_results.json").read_text())["test_samples"] == 12
    # predictions of both ranks are gathered (and the sampler's padding dropped) before the confusion matrix
    assert sum(map(sum, json.loads((output_dir / "confusion_matrix.json").read_text())["test"])) == 12
    # save_total_limit 1 with load_best_model_at_end: only the best validation checkpoint is left. Which epoch wins
    # depends on float rounding of this tiny random model (validation UA ties), so read it from the trainer state.
    best = json.loads((output_dir / "trainer_state.json").read_text())["best_model_checkpoint"]
    assert Path(best).name in {"checkpoint-3", "checkpoint-6"}
    assert [p.name for p in output_dir.glob("checkpoint-*")] == [Path(best).name]


@pytest.mark.slow
def test_freeze_encoder_steps_with_gradient_checkpointing_trains_under_ddp(run_argv, tmp_path):
    """Frozen for 2 steps, then trained: DDP (which wraps the model before the encoder is frozen) must cope with the
    frozen encoder under gradient checkpointing, and keep both ranks in step once it trains."""
    ranks = _launch(
        tmp_path / "records",
        run_argv
        + ["--output_dir", str(tmp_path / "run"), "--freeze_encoder_steps", "2", "--gradient_checkpointing", "true"],
        "--multi_gpu",
        "--num_processes",
        "2",
    )
    encoder = [[step["encoder_parameters"] for step in record["steps"]] for record in ranks]
    assert encoder[0] == encoder[1]  # gradients of the unfrozen encoder are averaged across ranks
    assert encoder[0][0] == encoder[0][1]  # steps 1-2: frozen
    assert len(set(encoder[0][1:])) == len(encoder[0]) - 1  # from step 3 on it moves every step
    assert [step["parameters"] for step in ranks[0]["steps"]] == [step["parameters"] for step in ranks[1]["steps"]]


def test_freeze_encoder_steps_refuses_ddp_without_unused_parameter_detection(tmp_path):
    with pytest.raises(ValueError, match="freeze_encoder_steps needs ddp_find_unused_parameters: true"):
        SERTrainingArguments(output_dir=str(tmp_path), freeze_encoder_steps=2, ddp_find_unused_parameters=False)


def test_deepspeed_cpu_inference_op_is_not_compiled_for_training_on_cpu_processes(monkeypatch):
    import deepspeed.ops

    monkeypatch.setitem(deepspeed.ops.__compatible_ops__, DEEPSPEED_CPU_INFERENCE_OP, True)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    on_gpus = SimpleNamespace(deepspeed=None, world_size=2, device=torch.device("cuda"))
    assert skip_deepspeed_cpu_inference_op(on_gpus) is False
    assert deepspeed.ops.__compatible_ops__[DEEPSPEED_CPU_INFERENCE_OP] is True
    on_cpus = SimpleNamespace(deepspeed=None, world_size=2, device=torch.device("cpu"))
    assert skip_deepspeed_cpu_inference_op(on_cpus) is True
    # DeepSpeed's TorchBackend builds the op only while this says it could
    assert deepspeed.ops.__compatible_ops__[DEEPSPEED_CPU_INFERENCE_OP] is False
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "false")
    monkeypatch.setitem(deepspeed.ops.__compatible_ops__, DEEPSPEED_CPU_INFERENCE_OP, True)
    assert skip_deepspeed_cpu_inference_op(on_cpus) is False  # not a DeepSpeed run: nothing touched


def test_fsdp_is_refused_for_processes_launched_without_gpu(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    monkeypatch.setattr(TrainingArguments, "__post_init__", lambda self: None)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch` with accelerate_configs/fsdp.yaml sets
    with pytest.raises(ValueError, match="FSDP needs GPUs: these 2 processes run on CPU"):
        SERTrainingArguments(output_dir=str(tmp_path))
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert SERTrainingArguments(output_dir=str(tmp_path)).use_cpu is False  # one process: FSDP's own business
