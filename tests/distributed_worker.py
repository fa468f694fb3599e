"""Run `hf_ser.train.main` in every process of an `accelerate launch` and record, per rank, what the tests check.

    accelerate launch --multi_gpu --num_processes 2 tests/distributed_worker.py RECORD_DIR [train argv ...]

Writes RECORD_DIR/rank<N>.json with
- `world_size`, `process_index`, `parallel_mode`, `device`: what the Trainer set up in this process;
- `steps`: after every optimizer step, a SHA-256 of all parameters and one of all BatchNorm running statistics;
- `evaluated_logits`: at every evaluation and prediction, the event, the step and the logits of the model being
  evaluated on `probe_input()`, computed by every rank together (under ZeRO-3 the forward gathers the sharded
  weights). The Trainer saves `checkpoint-N` right after evaluating step N, and hf-ser's final predictions follow the
  final save, so these are the in-training logits each saved model must reproduce;
- `pid<RANK>` (at start): the process id, so that a test can kill the ranks themselves (torch's launcher starts each
  in its own session, so killing the launcher's process group leaves them training);
- `writes`: every file this process opened for writing, created, renamed or deleted under output_dir (a Python
  audit hook sees `open`, `os.open`, `os.rename`, `os.remove`, `shutil.rmtree`, `os.mkdir`, so nothing is missed
  that goes through Python's file API; safetensors' and torch.save's native writers are outside it: the Trainer
  calls the first on the main process only, and the second per rank for `rng_state_<rank>.pth` and ZeRO shards).
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_ser.train import main as train_main  # noqa: E402

WORKER = Path(__file__).resolve()
REPO_ROOT = WORKER.parents[1]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
MUTATING_EVENTS = {"os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.mkdir", "os.truncate"}


def worker_command(record_dir: Path, argv: list, *launch_args: str) -> list:
    """`accelerate launch LAUNCH_ARGS tests/distributed_worker.py RECORD_DIR ARGV` (precision and dynamo fixed, a free
    port)."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *launch_args,
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
        str(WORKER),
        str(record_dir),
        *argv,
    ]


def worker_env(**extra: str) -> dict:
    """Offline, no GPU, one thread per process (two processes share two cores)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", **extra}


def launch(record_dir: Path, argv: list, *launch_args: str, env_extra=None) -> list[dict]:
    """Launch the worker, fail with its output tail if it fails, and return each rank's record."""
    command = worker_command(record_dir, argv, *launch_args)
    result = subprocess.run(command, capture_output=True, text=True, env=worker_env(**(env_extra or {})), timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return [json.loads((record_dir / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def probe_input() -> torch.Tensor:
    """Two fixed 1-second waveforms: the input on which in-training and reloaded models are compared."""
    return 0.1 * torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """What this rank holds of a parameter: its ZeRO-3 shard (`ds_tensor`; the parameter itself is an empty placeholder
    between forward passes), its FSDP2 shard (a DTensor's local tensor), or the whole tensor."""
    if hasattr(tensor, "ds_tensor"):
        return tensor.ds_tensor
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def digest(tensors) -> str:
    """SHA-256 of the values this rank holds of the tensors (`local_part`)."""
    sha = hashlib.sha256()
    for tensor in map(local_part, tensors):
        sha.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


class RankRecorder(TrainerCallback):
    def __init__(self):
        self.record = {"steps": []}

    def on_train_begin(self, args, state, control, **kwargs):
        self.record.update(
            world_size=args.world_size,
            process_index=args.process_index,
            parallel_mode=str(args.parallel_mode),
            device=str(args.device),
        )

    def on_step_end(self, args, state, control, model=None, **kwargs):
        buffers = [b for name, b in model.named_buffers() if "running_" in name]
        self.record["steps"].append(
            {
                "step": state.global_step,
                "parameters": digest(p for _, p in sorted(model.named_parameters())),
                "batch_norm_statistics": digest(buffers),
                "encoder_parameters": digest(
                    p for name, p in sorted(model.named_parameters()) if name.startswith("encoder.")
                ),
                # ZeRO-3 leaves each rank an empty placeholder per parameter; its full size is `ds_numel`
                "num_parameters": sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters()),
                "parameters_held": sum(local_part(p).numel() for p in model.parameters()),
            }
        )

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self._record_logits("evaluate", args, state, model)

    def on_predict(self, args, state, control, model=None, **kwargs):
        self._record_logits("predict", args, state, model)

    def _record_logits(self, event, args, state, model):
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits = model(input_values=probe_input().to(args.device)).logits
        model.train(was_training)
        entry = {"event": event, "step": state.global_step, "logits": logits.float().cpu().tolist()}
        self.record.setdefault("evaluated_logits", []).append(entry)


def main() -> None:
    record_dir, argv = Path(sys.argv[1]), sys.argv[2:]
    # torch's launcher starts each rank in its own session: a test that kills a run must kill the ranks by their ids
    record_dir.mkdir(parents=True, exist_ok=True)
    (record_dir / f"pid{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))
    output_dir = os.path.abspath(argv[argv.index("--output_dir") + 1])
    writes = []

    def audit(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            if flags & WRITE_FLAGS or any(c in mode for c in "wax+"):
                path = os.path.abspath(os.fsdecode(args[0]))
                if path.startswith(output_dir):
                    writes.append(["open", os.path.relpath(path, output_dir)])
        elif event in MUTATING_EVENTS and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(args[0]))
            if path.startswith(output_dir):
                writes.append([event, os.path.relpath(path, output_dir)])

    sys.addaudithook(audit)
    recorder = RankRecorder()
    results = train_main(argv, callbacks=[recorder])
    rank = recorder.record.get("process_index", int(os.environ.get("RANK", "0")))
    record_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        **recorder.record,
        "writes": writes,
        "test_ua": results.get("test_ua"),
        "torch_threads": torch.get_num_threads(),
    }
    (record_dir / f"rank{rank}.json").write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
