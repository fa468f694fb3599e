"""`hf-ser` command line: one subcommand per task, each a thin layer over a library function.

    hf-ser train RECIPE.yaml [--key value ...]
"""

from __future__ import annotations

import sys
from typing import Callable, Optional


def _train(argv: list[str]) -> int:
    from .train import main as train_main

    train_main(argv)
    return 0


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "train": (_train, "train a model from a recipe: hf-ser train RECIPE.yaml [--key value ...]"),
}


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
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
