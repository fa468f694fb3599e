"""Shared plumbing of the benchmark scripts: one subprocess per measured run (so peak RSS never mixes), variants run
interleaved (A, B, A, B, ...) so a change of load on the shared machine hits every variant alike, medians, the load
average next to each timing, and the machine description that goes with a results table.

A worker prints one JSON line prefixed with `RESULT ` on stdout; `run_worker` returns it as a dict.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterable

RESULT_PREFIX = "RESULT "
REPO_ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> tuple[float, float, float]:
    return tuple(round(value, 2) for value in os.getloadavg())


def emit(result: dict) -> None:
    """What a worker hands back to `run_worker`."""
    result.setdefault("peak_rss_mib", round(peak_rss_mib(), 1))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_worker(script: str | Path, args: list[str], env: dict | None = None, timeout: float = 3600) -> dict:
    """Run `python script args...` in a fresh process and return its RESULT line, with the load average before and
    after. A worker that fails raises with its stderr tail."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    load_before = load_average()
    completed = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        cwd=REPO_ROOT,
    )
    results = [line[len(RESULT_PREFIX) :] for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not results:
        raise RuntimeError(
            f"{Path(script).name} {' '.join(args)} failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    result = json.loads(results[-1])
    result["load_before"], result["load_after"] = load_before, load_average()
    return result


def interleaved(variants: Iterable[str], repeats: int, run: Callable[[str], dict], log=print) -> dict[str, list[dict]]:
    """`run(variant)` for every variant, `repeats` rounds of A, B, C, ...; results per variant in run order."""
    variants = list(variants)
    results: dict[str, list[dict]] = {variant: [] for variant in variants}
    for round_index in range(repeats):
        for variant in variants:
            result = run(variant)
            results[variant].append(result)
            log(f"[round {round_index + 1}/{repeats}] {variant}: {json.dumps(result)}")
    return results


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def machine_description() -> dict:
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_kib = int(
            next(
                line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
            ).split()[1]
        )
        memory = f"{memory_kib / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        memory = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path: str | Path | None, payload: dict) -> None:
    """Raw results as JSON (for the docs table and for re-checking the numbers)."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2))


# --- the models the memory benchmarks measure --------------------------------------------------------------------

# facebook/wav2vec2-large-lv60 / wav2vec2-large-960h-lv60-self (config.json on the Hub): layer-norm feature encoder
# with conv biases, pre-norm ("stable layer norm") Transformer. LayerDrop and SpecAugment-style masking are off so every
# step runs all 24 layers (the upper bound of time and memory).
WAV2VEC2_LARGE = dict(
    model_type="wav2vec2",
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    hidden_act="gelu",
    conv_dim=[512] * 7,
    conv_kernel=[10, 3, 3, 3, 3, 2, 2],
    conv_stride=[5, 2, 2, 2, 2, 2, 2],
    conv_bias=True,
    feat_extract_norm="layer",
    feat_extract_activation="gelu",
    do_stable_layer_norm=True,
    num_conv_pos_embeddings=128,
    num_conv_pos_embedding_groups=16,
    layer_norm_eps=1e-5,
    layerdrop=0.0,
    mask_time_prob=0.0,
)
# The same layout, small enough for a `--quick` sanity run in seconds.
WAV2VEC2_TINY = dict(
    WAV2VEC2_LARGE,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    conv_dim=[32] * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
LEVERS = ("full", "frozen_cnn", "frozen_cnn_gc", "lora")
LORA_SPEC = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "attention"}


def build_ser_model(lever: str, backbone: dict, num_labels: int = 4):
    """hf_ser.Wav2Vec2SER (random weights) with the seed's head (512 -> BN -> ReLU -> Dropout -> 256 -> ... -> 4), masked
    mean pooling, and one memory lever applied the way hf-ser applies it:

    - `full`: `freeze_feature_encoder: false`; `frozen_cnn`: the default `true`;
    - `frozen_cnn_gc`: + `gradient_checkpointing: true` (the Trainer calls the model's checkpointing switch);
    - `lora`: the recipe's `peft:` section through `hf_ser.training.lora.apply_lora` (r=8 on q/k/v/out_proj, head trained
      fully as PEFT `modules_to_save`; every encoder weight, the CNN included, frozen).
    """
    import torch

    from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig

    if lever not in LEVERS:
        raise ValueError(f"lever {lever!r}: use one of {LEVERS}")
    torch.manual_seed(0)
    config = Wav2Vec2SERConfig(
        backbone_config=dict(backbone),
        num_labels=num_labels,
        head_hidden_sizes=[512, 256],
        head_dropout=0.3,
        pooling="mean",
        freeze_feature_encoder=lever != "full",
    )
    model = Wav2Vec2SER(config)
    if lever == "frozen_cnn_gc":
        # transformers 5 names it activation_checkpointing_enable (gradient_checkpointing_enable is its old alias)
        (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
    if lever == "lora":
        from hf_ser.training.lora import apply_lora

        model = apply_lora(model, LORA_SPEC)
    return model.train()


def parameter_counts(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
