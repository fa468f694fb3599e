"""The GPU memory estimate's activation counting (benchmarks/gpu_memory_estimate.py), on a tiny wav2vec2 layout."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from common import WAV2VEC2_TINY, build_ser_model  # noqa: E402
from gpu_memory_estimate import CNN, estimate, linear_in_batch, saved_activations  # noqa: E402

SAMPLES = 8000  # 0.5 s


def test_saved_activations_grow_linearly_with_the_batch():
    model = build_ser_model("full", WAV2VEC2_TINY)
    fit = linear_in_batch(model, SAMPLES, bf16=False)["plain"]
    measured = saved_activations(model, 3, SAMPLES, bf16=False).total
    assert fit["slope"] > 0
    assert measured == pytest.approx(fit["intercept"] + 3 * fit["slope"], rel=0.01)


def test_a_frozen_feature_encoder_saves_nothing_and_checkpointing_keeps_less():
    full = saved_activations(build_ser_model("full", WAV2VEC2_TINY), 2, SAMPLES, bf16=False)
    frozen = saved_activations(build_ser_model("frozen_cnn", WAV2VEC2_TINY), 2, SAMPLES, bf16=False)
    assert full.by_region[CNN] > 0 and frozen.by_region.get(CNN, 0) == 0
    assert len(frozen.layers) == WAV2VEC2_TINY["num_hidden_layers"]
    assert frozen.layer_inputs > 0
    assert frozen.checkpointed() < frozen.total < full.total


def test_bf16_autocast_shrinks_what_each_example_adds():
    # Per example (the slope); the intercept holds autocast's bf16 copies of the weights, which do not grow with it.
    model = build_ser_model("frozen_cnn", WAV2VEC2_TINY)
    fp32 = linear_in_batch(model, SAMPLES, bf16=False)["plain"]
    bf16 = linear_in_batch(model, SAMPLES, bf16=True)["plain"]
    assert 0.3 * fp32["slope"] < bf16["slope"] < 0.8 * fp32["slope"]
    assert bf16["intercept"] > fp32["intercept"]


def test_estimate_rows_add_up():
    rows = estimate(WAV2VEC2_TINY, SAMPLES, effective_batch=4, micro_batches=[4, 2])
    for row in rows:
        assert row["total"] == row["weights"] + row["gradients"] + row["adamw"] + row["activations"]
        assert row["micro_batch"] * row["accumulation"] == 4
        assert row["gradients"] == 4 * row["trainable"] and row["adamw"] == 8 * row["trainable"]
    full, lora = rows[0], next(r for r in rows if r["lever"].startswith("LoRA"))
    assert lora["trainable"] < 0.8 * full["trainable"] and lora["adamw"] < full["adamw"]


def test_gpu_check_script_runs_in_quick_mode_on_cpu(tmp_path):
    """The GPU check (benchmarks/gpu_check.py) is run only where a GPU is lent; its quick CPU mode keeps it working."""
    import json
    import subprocess

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"
    # two levers that between them take every code path (autocast, checkpointing, PEFT); each runs in its own process
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--quick",
            "--device",
            "cpu",
            "--levers",
            "frozen_cnn_gc_bf16",
            "lora",
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert [row["lever"] for row in report["results"]] == ["frozen_cnn_gc_bf16", "lora"]
    assert all(row["seconds_per_step"] > 0 and row["samples_per_second"] > 0 for row in report["results"])


def test_the_augmentation_benchmark_compares_the_seed_list_with_the_same_list_on_cheap_methods():
    """benchmarks/augmentation_throughput.py: `seed` is the recipe's list untouched, each cheap pipeline differs from it
    only in TimeStretch/PitchShift's `method` (or in moving noise and masking to the batch), and one pass measures."""
    import numpy as np
    from augmentation_throughput import STRETCHES, clips_per_second, pipelines_of

    from hf_ser.arguments import load_recipe

    specs = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "wav2vec2.yaml")["augmentations"]
    pipelines = pipelines_of(specs)
    assert pipelines["seed"] == {"clip": specs, "batch": []}
    for method in ("fast_phase_vocoder", "soxr_speed"):
        cheap = pipelines[method]["clip"]
        assert [{k: v for k, v in spec.items() if k != "method"} for spec in cheap] == specs
        assert [spec.get("method") for spec in cheap] == [method if s["name"] in STRETCHES else None for s in specs]
        batch = pipelines[f"{method} + batch noise/mask"]
        assert [spec["name"] for spec in batch["clip"]] == list(STRETCHES)
        assert [spec["name"] for spec in batch["batch"]] == ["AddGaussianSNR", "TimeMask"]
    clips = [np.zeros(8000, np.float32) + 0.1, np.full(8000, -0.1, np.float32)]
    rate, cpu = clips_per_second(pipelines["soxr_speed + batch noise/mask"], clips, 4, 0, 2)
    assert rate > 0 and cpu > 0
