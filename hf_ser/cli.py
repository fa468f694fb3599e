"""`hf-ser COMMAND [ARGS...]`: one subcommand per task, each a thin layer over one module's `main(argv)`.

Each command's usage lives in its own argparse parser only (`hf-ser COMMAND --help`); this module lists what each
command is for.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Optional


def _merge_lora(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-ser merge-lora", description="Fold a LoRA run's adapter into its base weights: a plain checkpoint."
    )
    parser.add_argument("run_dir", help="the LoRA run folder (adapter_config.json, base_model/)")
    parser.add_argument("out_dir", help="where the merged checkpoint and its feature extractor go")
    args = parser.parse_args(argv)
    from hf_ser.inference.loading import merge_lora

    print(merge_lora(args.run_dir, args.out_dir))
    return 0


def _delegate(module: str) -> Callable[[list[str]], int]:
    """The `main(argv)` of an hf_ser module, imported only when its command runs (keeps `hf-ser --help` fast)."""

    def run(argv: list[str]) -> int:
        result = importlib.import_module(f"hf_ser.{module}").main(argv)
        return result if isinstance(result, int) else 0  # library mains return their results for Python callers

    return run


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "train": (_delegate("train"), "train a model from a recipe"),
    "evaluate": (_delegate("evaluation.evaluate_command"), "score a saved model on a corpus"),
    "push": (_delegate("hub.publish"), "publish a run folder with its model card"),
    "cv": (_delegate("experiments.cross_validation"), "speaker-independent cross-validation of a recipe"),
    "compare": (_delegate("experiments.compare"), "compare runs and cross-validations side by side"),
    "seeds": (_delegate("experiments.seeds"), "one recipe over several seeds, mean and sample std"),
    "sweep": (_delegate("experiments.sweep"), "search recipe values on validation speakers (Optuna or Ray Tune)"),
    "merge-lora": (_merge_lora, "fold a LoRA run's adapter into a plain checkpoint"),
    "predict": (_delegate("inference.predict"), "emotions of audio files or folders, with timelines"),
    "export-onnx": (_delegate("inference.onnx_export"), "export a model to ONNX"),
    "demo": (_delegate("hub.demo"), "serve a model's browser demo page (Gradio)"),
}


# Modules of the optional extras (pyproject.toml), and the extra that installs each.
OPTIONAL_EXTRAS = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "deepspeed": "deepspeed",
    "gradio": "demo",
    "optuna": "sweep",
    "ray": "sweep-ray",
}


# What a user's mistake raises (a bad recipe key or value, a missing path, an unknown label or speaker, a finished run):
# printed as one line naming the key or file; `hf-ser --debug COMMAND ...` (or HF_SER_DEBUG=1) shows the traceback.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hf-ser")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("HF_SER_DEBUG", "") not in ("", "0")
    if argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    if argv and argv[0] == "--version":
        print(f"hf-ser {_version()}")
        return 0
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<12} {help_text}" for name, (_, help_text) in COMMANDS.items()]
        print("usage: hf-ser COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(lines))
        print(
            "\n`hf-ser COMMAND --help` shows the command's usage and options; `hf-ser --debug COMMAND ...` shows the "
            "traceback of an error; `hf-ser --version` the version."
        )
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nhf-ser: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    command, _ = COMMANDS[argv[0]]
    try:
        return command(argv[1:])
    except ModuleNotFoundError as error:
        extra = OPTIONAL_EXTRAS.get((error.name or "").split(".")[0])
        if extra is None or debug:
            raise
        print(
            f"hf-ser {argv[0]}: {error.name} is not installed; it comes with the `{extra}` extra: "
            f"pip install 'hf-ser[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except USER_ERRORS as error:
        if debug:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"hf-ser {argv[0]}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
