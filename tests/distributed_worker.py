"""Run `hf_ser.train.main` in every process of an `accelerate launch` and record, per rank, what the tests check.

    accelerate launch --multi_gpu --num_processes 2 tests/distributed_worker.py RECORD_DIR [train argv ...]

Writes RECORD_DIR/rank<N>.json with
- `world_size`, `process_index`, `parallel_mode`, `device`: what the Trainer set up in this process;
- `steps`: after every optimizer step, a SHA-256 of all parameters and one of all BatchNorm running statistics;
- `writes`: every file this process opened for writing, created, renamed or deleted under output_dir (a Python
  audit hook sees `open`, `os.open`, `os.rename`, `os.remove`, `shutil.rmtree`, `os.mkdir`, so nothing is missed
  that goes through Python's file API; safetensors' and torch.save's native writers are outside it: the Trainer
  calls the first on the main process only, and the second per rank for `rng_state_<rank>.pth` and ZeRO shards).
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_ser.train import main as train_main  # noqa: E402

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
MUTATING_EVENTS = {"os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.mkdir", "os.truncate"}


def digest(tensors) -> str:
    sha = hashlib.sha256()
    for tensor in tensors:
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
                "num_parameters": sum(p.numel() for p in model.parameters()),
            }
        )


def main() -> None:
    record_dir, argv = Path(sys.argv[1]), sys.argv[2:]
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
