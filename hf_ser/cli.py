"""`hf-ser` command line: one subcommand per task, each a thin layer over a library function.

hf-ser train RECIPE.yaml [--key value ...]
hf-ser evaluate MODEL [RECIPE.yaml] --output_dir DIR [--split test] [--key value ...]
hf-ser push RUN_DIR --repo-id NAME [--private]
hf-ser cv RECIPE.yaml [--folds leave-one-speaker-out | leave-one-session-out | K] [--key value ...]
hf-ser compare RUN_OR_CV_DIR... --output DIR
hf-ser seeds RECIPE.yaml --seeds 1 2 3 [--key value ...]
hf-ser merge-lora RUN_DIR OUT_DIR
hf-ser predict MODEL AUDIO... [--window S --hop S] [--format table|json|csv] [--output FILE] [--plot PNG]
hf-ser export-onnx MODEL OUT_DIR
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable, Optional


def _merge_lora(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0].startswith("-"):
        print("usage: hf-ser merge-lora RUN_DIR OUT_DIR", file=sys.stderr)
        return 2
    from hf_ser.inference.loading import merge_lora

    print(merge_lora(*argv))
    return 0


def _delegate(module: str) -> Callable[[list[str]], int]:
    """The `main(argv)` of an hf_ser module, imported only when its command runs (keeps `hf-ser --help` fast)."""

    def run(argv: list[str]) -> int:
        result = importlib.import_module(f"hf_ser.{module}").main(argv)
        return result if isinstance(result, int) else 0  # library mains return their results for Python callers

    return run


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "train": (_delegate("train"), "train a model from a recipe: hf-ser train RECIPE.yaml [--key value ...]"),
    "evaluate": (
        _delegate("evaluation.evaluate_command"),
        "score a saved model on a corpus: hf-ser evaluate MODEL [RECIPE.yaml] --output_dir DIR "
        "[--split test|validation|train|all] [--key value ...]",
    ),
    "push": (
        _delegate("hub.publish"),
        "publish a run folder with its model card: hf-ser push RUN_DIR --repo-id NAME [--private]",
    ),
    "cv": (
        _delegate("experiments.cross_validation"),
        "speaker-independent cross-validation: hf-ser cv RECIPE.yaml [--folds leave-one-speaker-out | "
        "leave-one-session-out | K] [--key value ...]",
    ),
    "compare": (
        _delegate("experiments.compare"),
        "compare runs and CV results: hf-ser compare RUN_OR_CV_DIR... --output DIR",
    ),
    "seeds": (
        _delegate("experiments.seeds"),
        "one recipe over several seeds, mean ± std: hf-ser seeds RECIPE.yaml --seeds 1 2 3 [--key value ...]",
    ),
    "merge-lora": (_merge_lora, "fold a LoRA run's adapter into a plain checkpoint: hf-ser merge-lora RUN_DIR OUT_DIR"),
    "predict": (
        _delegate("inference.predict"),
        "emotions of audio files or folders: hf-ser predict MODEL AUDIO... [--window S --hop S] "
        "[--format table|json|csv] [--output FILE] [--plot PNG] [--backend torch|onnx]",
    ),
    "export-onnx": (
        _delegate("inference.onnx_export"),
        "export a model to ONNX (dynamic batch/time): hf-ser export-onnx MODEL OUT_DIR",
    ),
}


# Modules of the optional extras (pyproject.toml), and the extra that installs each.
OPTIONAL_EXTRAS = {"onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx", "deepspeed": "deepspeed"}


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<12} {help_text}" for name, (_, help_text) in COMMANDS.items()]
        print("usage: hf-ser COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nhf-ser: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    command, _ = COMMANDS[argv[0]]
    try:
        return command(argv[1:])
    except ModuleNotFoundError as error:
        extra = OPTIONAL_EXTRAS.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"hf-ser {argv[0]}: {error.name} is not installed; it comes with the `{extra}` extra: "
            f"pip install 'hf-ser[{extra}]'",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
