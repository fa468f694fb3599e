"""A training process killed with SIGKILL after a checkpoint resumes, explicitly or by itself, to exactly the metrics of
an uninterrupted run with the same seed; an incomplete checkpoint folder is never picked up."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from hf_ser.training.checkpoints import last_complete_checkpoint, weights_files

# 24 training clips / batch 4 = 6 steps per epoch, 12 in all; checkpoint-4 is in the middle of the first epoch, where
# the Trainer skips already-seen batches and restores RNG state (the hard case for reproducibility).
RESUME_ARGS = [
    "--num_train_epochs",
    "2",
    "--per_device_train_batch_size",
    "4",
    "--save_strategy",
    "steps",
    "--save_steps",
    "4",
    "--eval_strategy",
    "steps",
    "--eval_steps",
    "4",
    "--logging_strategy",
    "steps",
    "--logging_steps",
    "1",
    "--save_total_limit",
    "3",
    "--log_level",
    "info",
]
TIMING_WORDS = ("runtime", "per_second")
# The end-of-training summary `train_loss` averages only the losses this process saw (the Trainer resets its sum on
# resume), so it differs by construction; every step's own `loss` is compared instead.
PROCESS_ONLY = {"train_loss"}


def _launch(argv, output_dir):
    command = [
        sys.executable,
        str(REPO_ROOT / "hf_ser" / "train.py"),
        *argv,
        *RESUME_ARGS,
        "--output_dir",
        str(output_dir),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _finish(process):
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    return output


def _history(output_dir):
    """The log of every training step and validation, without timings."""
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [
        {k: v for k, v in entry.items() if not any(w in k for w in TIMING_WORDS) and k not in PROCESS_ONLY}
        for entry in state["log_history"]
    ]


def _final_metrics(output_dir):
    return {
        name: {
            k: v
            for k, v in json.loads((output_dir / f"{name}_results.json").read_text()).items()
            if not any(w in k for w in TIMING_WORDS)
        }
        for name in ("eval", "test")
    }


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_result(tiny_train_argv, tmp_path):
    uninterrupted = _launch(tiny_train_argv, tmp_path / "uninterrupted")
    killed_dir = tmp_path / "killed"
    victim = _launch(tiny_train_argv, killed_dir)
    deadline = time.monotonic() + 300
    # Killed as soon as the first checkpoint is complete (weights and a parseable trainer_state.json). Training goes
    # on meanwhile, so the kill may land after a later checkpoint too: the test resumes from whichever is the last
    # complete one, as a user would, instead of assuming checkpoint-4 won the race.
    while last_complete_checkpoint(killed_dir) is None:
        assert victim.poll() is None, f"training ended before a checkpoint was written:\n{victim.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL and not (killed_dir / "test_results.json").exists()
    checkpoint = Path(last_complete_checkpoint(killed_dir))
    assert checkpoint.name in {"checkpoint-4", "checkpoint-8"}  # mid-epoch either way (6 steps per epoch)

    auto_dir = tmp_path / "auto"
    shutil.copytree(killed_dir, auto_dir)
    partial = auto_dir / "checkpoint-999"  # what a kill in the middle of saving leaves: weights, no trainer state
    partial.mkdir()
    shutil.copy(checkpoint / "model.safetensors", partial / "model.safetensors")
    explicit = _launch([*tiny_train_argv, "--resume_from_checkpoint", str(checkpoint)], killed_dir)
    automatic = _launch(tiny_train_argv, auto_dir)
    reference_log, automatic_log = _finish(uninterrupted), _finish(automatic)
    _finish(explicit)

    assert f"Ignoring {partial}: an incomplete checkpoint" in automatic_log
    assert f"Resuming from {auto_dir / checkpoint.name}" in automatic_log
    assert "Resuming from" not in reference_log
    reference = _final_metrics(tmp_path / "uninterrupted")
    assert reference["test"]["test_samples"] == 12
    for resumed in (killed_dir, auto_dir):
        assert _final_metrics(resumed) == reference
        assert _history(resumed) == _history(tmp_path / "uninterrupted")  # every step's loss, exactly
    for run in (tmp_path / "uninterrupted", killed_dir, auto_dir):
        history = _history(run)
        assert len([entry for entry in history if "loss" in entry]) == 12
        assert not [key for entry in history for key in entry if key.startswith("test_")]  # validation selects
        assert weights_files(run) == [] and (run / "model.safetensors").is_file()
