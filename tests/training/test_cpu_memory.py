"""`cpu_release_freed_memory` and `cpu_trim_freed_memory` (hf_ser/training/cpu_memory.py): freed blocks leave
the process instead of staying resident."""

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from hf_ser.arguments import SERTrainingArguments
from hf_ser.training.cpu_memory import release_freed_memory

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the lever is glibc's mallopt")

# Freeing one 8 MiB block raises glibc's default mmap threshold to 8 MiB, so the twenty 4 MiB blocks that follow come
# from the heap; all but the last are freed, and the heap cannot shrink below the last one. Prints retained MiB.
PROBE = """
import importlib.util, os, sys
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
if sys.argv[1] == "release":  # the module alone, without importing hf_ser's dependencies
    spec = importlib.util.spec_from_file_location("cpu_memory", {path!r})
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    assert module.release_freed_memory()
base = rss_mib()
big = bytearray(8 * 2**20); del big
blocks = [bytearray(4 * 2**20) for _ in range(20)]
keep = blocks[-1]; del blocks
if sys.argv[1] == "trim":  # what TrimFreedMemoryCallback does after each step
    spec = importlib.util.spec_from_file_location("cpu_memory", {path!r})
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    assert module.freed_bytes_held() > 60 * 2**20  # the freed blocks, held by the allocator
    assert module.trim_freed_memory()
print(rss_mib() - base)
"""


def retained_mib(mode: str) -> float:
    code = PROBE.format(path=str(REPO_ROOT / "hf_ser" / "training" / "cpu_memory.py"))
    result = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return float(result.stdout.strip().splitlines()[-1])


@glibc_only
def test_freed_blocks_go_back_to_the_os_only_with_the_lever():
    assert retained_mib("default") > 60  # 19 freed 4 MiB blocks stay resident
    assert retained_mib("release") < 16  # only the block still alive
    assert retained_mib("trim") < 16  # freed at once by malloc_trim, the live block kept


def test_the_trim_callback_trims_after_every_step_and_evaluation(monkeypatch):
    import hf_ser.training.callbacks as callbacks

    trims = []
    monkeypatch.setattr(callbacks, "trim_freed_memory", lambda: trims.append(True) or True)
    callback = callbacks.TrimFreedMemoryCallback()
    for _ in range(3):
        callback.on_step_end(None, None, None)
    callback.on_evaluate(None, None, None)
    assert len(trims) == callback.trims == 4


def test_the_lever_is_a_training_argument_and_refuses_thresholds_glibc_cannot_take(tmp_path):
    assert SERTrainingArguments(output_dir=str(tmp_path)).cpu_release_freed_memory is False
    assert SERTrainingArguments(output_dir=str(tmp_path)).cpu_trim_freed_memory is False
    with pytest.raises(ValueError, match="1 byte to 32 MiB"):
        release_freed_memory(64 * 2**20)


@pytest.mark.parametrize(
    "trim, release, threshold_mib, trim_callbacks, thresholds",
    [
        (False, False, 16.0, 0, [16 * 2**20]),  # the defaults
        (True, False, 16.0, 1, [16 * 2**20]),
        (True, False, 0.0, 1, []),  # glibc's own threshold
        (True, True, 16.0, 0, [None]),  # the release lever replaces both
    ],
)
def test_the_trainer_fixes_the_mmap_threshold_by_default_and_trims_after_each_step_when_asked(
    trim, release, threshold_mib, trim_callbacks, thresholds, tmp_path, monkeypatch
):
    import torch

    import hf_ser.training.trainer
    from hf_ser.training.callbacks import TrimFreedMemoryCallback

    calls = []  # the lever itself would change the test process's allocator
    monkeypatch.setattr(
        hf_ser.training.trainer, "release_freed_memory", lambda *args: calls.append(args[0] if args else None)
    )
    args = SERTrainingArguments(
        output_dir=str(tmp_path),
        cpu_trim_freed_memory=trim,
        cpu_release_freed_memory=release,
        cpu_mmap_threshold_mib=threshold_mib,
        use_cpu=True,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        report_to="none",
    )
    trainer = hf_ser.training.trainer.SERTrainer(model=torch.nn.Linear(2, 2), args=args)
    trims = [c for c in trainer.callback_handler.callbacks if isinstance(c, TrimFreedMemoryCallback)]
    assert (len(trims), calls) == (trim_callbacks, thresholds)


def test_the_threshold_is_refused_beyond_what_glibc_takes(tmp_path):
    assert SERTrainingArguments(output_dir=str(tmp_path)).cpu_mmap_threshold_mib == 16.0
    with pytest.raises(ValueError, match="cpu_mmap_threshold_mib=64.0: glibc takes up to 32 MiB; 0 keeps its own"):
        SERTrainingArguments(output_dir=str(tmp_path), cpu_mmap_threshold_mib=64.0)


def test_off_glibc_the_default_threshold_is_skipped_without_a_warning(tmp_path, monkeypatch, caplog):
    import torch

    import hf_ser.training.trainer

    calls = []
    monkeypatch.setattr(hf_ser.training.trainer, "glibc_malloc", lambda: False)
    monkeypatch.setattr(hf_ser.training.trainer, "release_freed_memory", lambda *args: calls.append(args))
    args = SERTrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, eval_strategy="no", load_best_model_at_end=False, report_to="none"
    )
    with caplog.at_level("WARNING"):
        hf_ser.training.trainer.SERTrainer(model=torch.nn.Linear(2, 2), args=args)
    assert calls == [] and not [r for r in caplog.records if "mmap" in r.getMessage() or "glibc" in r.getMessage()]
