"""Sharded launch configs trained for real: DeepSpeed ZeRO-2 and ZeRO-3 with 2 CPU processes (gloo), the tiny wav2vec2
architecture with its weight-normed positional convolution (the part ZeRO-3 trips over) and the seed's BatchNorm head.

Per engine, one shared set of runs (a module fixture): an uninterrupted run, and beside it a run killed with SIGKILL
(its whole process group) once a checkpoint is complete, then relaunched with the same command, which resumes from
its last complete checkpoint by itself. FSDP cannot shard on CPU processes with accelerate 1.15 (it silently trains
DDP there), so hf-ser refuses it with the reason; on a machine with 2 GPUs the same runs and checks cover `fsdp.yaml`
too (`python benchmarks/gpu_check.py --fsdp` runs them there).
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO_ROOT, run_without_hf_ser, tiny_argv
from distributed_worker import launch, probe_input, worker_command, worker_env
from transformers import AutoModelForAudioClassification

from hf_ser.training.checkpoints import last_complete_checkpoint

CONFIG_DIR = REPO_ROOT / "accelerate_configs"
GPU_ENGINE = "fsdp.yaml"  # FSDP2, sharded per wrapped block; needs GPUs (test_fsdp_on_cpu_processes_is_refused...)
ENGINES = ["deepspeed_zero2.yaml", "deepspeed_zero3.yaml"] + ([GPU_ENGINE] if torch.cuda.device_count() >= 2 else [])
# 24 training clips / (4 per process x 2 processes) = 3 steps per epoch, 6 in all; validation and a checkpoint every
# 2 steps, the best one reloaded at the end (under ZeRO-3 that reload goes through DeepSpeed's own checkpoint loader).
ENGINE_ARGV = [
    "--per_device_train_batch_size",
    "4",
    "--eval_strategy",
    "steps",
    "--eval_steps",
    "2",
    "--save_strategy",
    "steps",
    "--save_steps",
    "2",
    "--logging_strategy",
    "steps",
    "--logging_steps",
    "1",
    "--log_level",
    "info",
]
STEPS = 6
# Same weights, same input, a different process and summation order: fp32 rounding only. On GPUs, cuDNN runs the
# convolutions in TF32 by default, and the reloaded model is run on the CPU.
LOGITS_ATOL = {"cpu": 1e-5, "gpu": 2e-3}
# The resumed run restores each rank's optimizer shard, scheduler, RNG state and data position, so every logged
# step's loss and every final metric is expected to equal the uninterrupted run's exactly; the comparison allows
# fp32 rounding in case a gather orders a sum differently. GPU kernels are not bit-deterministic (atomic adds).
LOSS_ATOL = {"cpu": 1e-6, "gpu": 1e-4}
# DeepSpeed on CPU processes (gloo); FSDP with one GPU per rank. FSDP wraps every block of >= 1,000 parameters in
# this tiny model (the config's 1M is sized for real encoders, where it means one unit per encoder layer).
LAUNCH = {
    "deepspeed_zero2.yaml": ({"DS_ACCELERATOR": "cpu"}, []),
    "deepspeed_zero3.yaml": ({"DS_ACCELERATOR": "cpu"}, []),
    GPU_ENGINE: ({"CUDA_VISIBLE_DEVICES": "0,1"}, ["--fsdp_min_num_params", "1000"]),
}
TIMING_WORDS = ("runtime", "per_second")


def _argv(corpus, output_dir):
    return tiny_argv(corpus, output_dir) + ENGINE_ARGV


def _popen(record_dir, argv, config):
    env, launch_args = LAUNCH[config]
    command = worker_command(
        record_dir, argv, "--config_file", str(CONFIG_DIR / config), "--num_processes", "2", *launch_args
    )
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=worker_env(**env),
        start_new_session=True,  # its own process group: the launcher and both ranks are killed together
    )


def _finish(process):
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-4000:]
    return output


def _records(record_dir):
    return [json.loads((record_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def _resumable_checkpoint(output_dir):
    """The highest checkpoint both ranks have finished writing: the one the relaunched run must resume from."""
    checkpoint = last_complete_checkpoint(output_dir, processes=2)
    return Path(checkpoint) if checkpoint else None


def _kill_run(launcher, record_dir):
    """SIGKILL to both ranks and to the launcher, as when a machine is lost: nothing gets to clean up."""
    for rank in (0, 1):
        os.killpg(int((record_dir / f"pid{rank}").read_text()), signal.SIGKILL)
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.communicate()


@pytest.fixture(scope="module", params=ENGINES)
def engine(request, tiny_corpus, tmp_path_factory):
    config, root = request.param, tmp_path_factory.mktemp(request.param.removesuffix(".yaml"))
    uninterrupted = _popen(root / "records", _argv(tiny_corpus, root / "run"), config)
    victim_argv = _argv(tiny_corpus, root / "killed")
    victim = _popen(root / "victim_records", victim_argv, config)
    deadline = time.monotonic() + 300
    while (checkpoint := _resumable_checkpoint(root / "killed")) is None:
        assert victim.poll() is None, f"the run ended before a checkpoint was complete:\n{victim.stdout.read()[-4000:]}"
        assert time.monotonic() < deadline, "no complete checkpoint after 300 s"
        time.sleep(0.05)
    _kill_run(victim, root / "victim_records")
    uninterrupted_log = _finish(uninterrupted)
    killed_at = _resumable_checkpoint(root / "killed")  # training went on until the kill landed
    resumed_log = _finish(_popen(root / "resumed_records", victim_argv, config))
    return SimpleNamespace(
        config=config,
        ranks=_records(root / "records"),
        output_dir=root / "run",
        log=uninterrupted_log,
        first_checkpoint=checkpoint,
        killed_at=killed_at,
        killed_dir=root / "killed",
        resumed_ranks=_records(root / "resumed_records"),
        resumed_log=resumed_log,
    )


def _device(engine):
    return "gpu" if engine.config == GPU_ENGINE else "cpu"


@pytest.mark.slow
def test_two_processes_train_one_sharded_model(engine):
    for rank, record in enumerate(engine.ranks):
        assert (record["process_index"], record["world_size"]) == (rank, 2)
        assert [step["step"] for step in record["steps"]] == list(range(1, STEPS + 1))
        hashes = [step["parameters"] for step in record["steps"]]
        assert len(set(hashes)) == STEPS  # the weights (this rank's shard under ZeRO-3) move every step
    held = [record["steps"][0]["parameters_held"] for record in engine.ranks]
    total = engine.ranks[0]["steps"][0]["num_parameters"]
    if engine.config != "deepspeed_zero2.yaml":  # ZeRO-3, FSDP: each rank holds about half, not the other's half
        assert sum(held) >= total and all(h < 0.6 * total for h in held)
        assert engine.ranks[0]["steps"][-1]["parameters"] != engine.ranks[1]["steps"][-1]["parameters"]
    else:  # ZeRO-2 keeps whole, identical weights on every rank
        assert held == [total, total]
        assert [s["parameters"] for s in engine.ranks[0]["steps"]] == [
            s["parameters"] for s in engine.ranks[1]["steps"]
        ]
    if engine.config == GPU_ENGINE:
        return
    checkpoint = engine.output_dir / "checkpoint-6"
    shards = sorted(p.name for p in (checkpoint / "global_step6").iterdir())
    assert [name for name in shards if name.endswith("optim_states.pt")] == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ], shards  # one optimizer-state shard per rank
    assert (checkpoint / "zero_to_fp32.py").is_file() and (checkpoint / "latest").read_text() == "global_step6"


@pytest.mark.slow
def test_sharded_run_writes_each_result_once_from_rank_zero(engine):
    files_rank1 = [path for event, path in engine.ranks[1]["writes"] if event != "os.mkdir"]
    assert files_rank1 == [], f"rank 1 wrote {files_rank1}"
    opened = [path for event, path in engine.ranks[0]["writes"] if event == "open"]
    for name in ("data_report.json", "run_config.json", "eval_results.json", "test_results.json", "README.md"):
        assert opened.count(name) == 1, (name, opened.count(name))
    for path in engine.output_dir.glob("*.json"):
        json.loads(path.read_text())  # complete, not interleaved
    results = json.loads((engine.output_dir / "test_results.json").read_text())
    assert results["test_samples"] == 12  # both ranks' predictions gathered, the sampler's padding dropped


def _in_training_logits(engine, folder):
    """What each rank computed on the probe while training: at the evaluation just before `checkpoint-N` was saved,
    or, for the final model, during the final predictions (after the best checkpoint was reloaded and saved)."""
    logits = []
    for record in engine.ranks:
        if folder.name.startswith("checkpoint-"):
            step = int(folder.name.split("-")[1])
            [entry] = [e for e in record["evaluated_logits"] if e["event"] == "evaluate" and e["step"] == step]
        else:
            entry = [e for e in record["evaluated_logits"] if e["event"] == "predict"][-1]
        logits.append(torch.tensor(entry["logits"]))
    return logits


def _saved_models(engine):
    checkpoints = sorted(engine.output_dir.glob("checkpoint-*"))
    best = json.loads((engine.output_dir / "trainer_state.json").read_text())["best_model_checkpoint"]
    assert Path(best) in checkpoints and len(checkpoints) >= 1
    return [engine.output_dir, *checkpoints]


@pytest.mark.slow
def test_sharded_checkpoints_load_as_plain_models_with_the_in_training_logits(engine):
    atol = LOGITS_ATOL[_device(engine)]
    for folder in _saved_models(engine):
        rank0, rank1 = _in_training_logits(engine, folder)
        # every rank evaluates the same model (the precise BatchNorm statistics are averaged over ranks)
        torch.testing.assert_close(rank0, rank1, atol=atol, rtol=0)
        model = AutoModelForAudioClassification.from_pretrained(folder).eval()
        assert type(model).__name__ == "Wav2Vec2SER"
        with torch.no_grad():
            logits = model(input_values=probe_input()).logits
        torch.testing.assert_close(logits, rank0, atol=atol, rtol=0, msg=f"{folder.name}")


@pytest.mark.slow
def test_sharded_final_model_loads_without_hf_ser_with_the_in_training_logits(engine, tmp_path):
    torch.save(probe_input(), tmp_path / "probe.pt")
    line = run_without_hf_ser(
        f"""
        import json, torch
        from transformers import AutoModelForAudioClassification
        model = AutoModelForAudioClassification.from_pretrained({str(engine.output_dir)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            logits = model.eval()(input_values=torch.load({str(tmp_path / "probe.pt")!r})).logits
        print(json.dumps(logits.tolist()))
        """,
        cwd=tmp_path,
    )
    expected, _ = _in_training_logits(engine, engine.output_dir)
    atol = LOGITS_ATOL[_device(engine)]
    torch.testing.assert_close(torch.tensor(json.loads(line)), expected, atol=atol, rtol=0)


def _history(output_dir):
    state = json.loads((output_dir / "trainer_state.json").read_text())
    # `train_loss` averages only the losses the resumed process saw: it differs by construction
    return [
        {k: v for k, v in entry.items() if not any(w in k for w in TIMING_WORDS) and k != "train_loss"}
        for entry in state["log_history"]
    ]


def _assert_close_entries(resumed, reference, atol):
    assert [sorted(e) for e in resumed] == [sorted(e) for e in reference]
    for got, want in zip(resumed, reference):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=atol, rel=0), (key, got, want)


@pytest.mark.slow
def test_killed_sharded_run_resumes_to_the_uninterrupted_final_loss(engine):
    atol = LOSS_ATOL[_device(engine)]
    assert engine.killed_at is not None and engine.killed_at.name in {"checkpoint-2", "checkpoint-4"}
    assert f"Resuming from {engine.killed_at}" in engine.resumed_log
    assert "Resuming from" not in engine.log
    # the relaunch trained only the steps after the checkpoint, on both ranks
    resumed_step = int(engine.killed_at.name.split("-")[1])
    for record in engine.resumed_ranks:
        assert [s["step"] for s in record["steps"]] == list(range(resumed_step + 1, STEPS + 1))
    reference, resumed = _history(engine.output_dir), _history(engine.killed_dir)
    assert len([entry for entry in reference if "loss" in entry]) == STEPS
    _assert_close_entries(resumed, reference, atol)  # every step's loss and every validation, the final step's included
    for name in ("eval", "test"):
        want, got = (
            json.loads((d / f"{name}_results.json").read_text()) for d in (engine.output_dir, engine.killed_dir)
        )
        _assert_close_entries(
            [{k: v for k, v in got.items() if not any(w in k for w in TIMING_WORDS)}],
            [{k: v for k, v in want.items() if not any(w in k for w in TIMING_WORDS)}],
            atol,
        )
    # the resumed ranks' weights follow the uninterrupted ranks' exactly, step by step
    if _device(engine) == "gpu":
        return
    for resumed_rank, rank in zip(engine.resumed_ranks, engine.ranks):
        assert [s["parameters"] for s in resumed_rank["steps"]] == [
            s["parameters"] for s in rank["steps"][resumed_step:]
        ]


# ---------------------------------------------------------------- FSDP


@pytest.mark.slow
def test_fsdp_on_cpu_processes_is_refused_with_the_reason(tiny_corpus, tmp_path):
    with pytest.raises(AssertionError) as failure:
        launch(
            tmp_path / "records",
            _argv(tiny_corpus, tmp_path / "run"),
            "--config_file",
            str(CONFIG_DIR / "fsdp.yaml"),
            "--num_processes",
            "2",
        )
    assert (
        "ValueError: FSDP needs GPUs: these 2 processes run on CPU, where accelerate would silently train plain DDP "
        "instead of sharding" in str(failure.value)
    )
    assert not (tmp_path / "run").exists()  # refused while parsing the arguments, before any file is written
