"""Several seeds of one recipe, summarised as mean ± standard deviation.

    hf-ser seeds RECIPE.yaml --seeds 1 2 3 [--key value ...]

Each seed trains into `output_dir/seed-N` (same recipe and overrides, only `seed` differs); the summary is computed
from the per-seed `eval_results.json` / `test_results.json` files and written to `output_dir/seeds_summary.json` and
`seeds_summary.md`. A seed whose run finished already is not trained again, so an interrupted command can be run
again as it was. The standard deviation is the sample one (ddof=1), as for a handful of runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Optional

from hf_ser.evaluation.metrics import mean_std
from hf_ser.run_folder import SPLIT_PREFIXES, results_file
from hf_ser.training.checkpoints import is_finished_run

logger = logging.getLogger(__name__)

RESULT_FILES = tuple(results_file(prefix) for prefix in SPLIT_PREFIXES.values())
SUMMARY_METRICS = tuple(f"{split}_{name}" for split in ("eval", "test") for name in ("wa", "ua", "macro_f1"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-ser seeds",
        usage="hf-ser seeds RECIPE.yaml --seeds 1 2 3 [--key value ...]",
        allow_abbrev=False,
        description="Train one recipe once per seed into OUTPUT_DIR/seed-N and summarise validation and test "
        "WA / UA / macro-F1 as mean and sample standard deviation. Every other option is a recipe override.",
    )
    parser.add_argument("--seeds", nargs="+", type=int, help="the seeds, distinct integers")
    return parser


def split_seeds_argv(argv: list[str]) -> tuple[list[int], list[str]]:
    """`--seeds 1 2 3` out of a command line; the rest is the recipe and its overrides, in order."""
    args, rest = build_parser().parse_known_args(argv)
    if not args.seeds:
        raise ValueError("hf-ser seeds: give the seeds, e.g. `hf-ser seeds RECIPE.yaml --seeds 1 2 3`")
    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds needs distinct integers, got {args.seeds}")
    return args.seeds, rest


def seed_dir(output_dir: str | Path, seed: int) -> Path:
    return Path(output_dir) / f"seed-{seed}"


def run_seeds(argv: list[str], seeds: list[int]) -> dict:
    """Train the recipe once per seed into `output_dir/seed-N` (the corpus decoded once for all of them), then
    summarise the runs' result files."""
    from hf_ser.arguments import parse_args, refuse_dimensional
    from hf_ser.data.dataset import check_corpus
    from hf_ser.train import train

    model_args, data_args, training_args = parse_args(list(argv))  # also checks the recipe before the first run
    refuse_dimensional(data_args, "seeds")
    corpus = None
    for seed in seeds:
        run_dir = seed_dir(training_args.output_dir, seed)
        if is_finished_run(run_dir) and not training_args.overwrite_output_dir:
            logger.info("seed %d: finished already (%s), not trained again", seed, run_dir)
            continue
        if corpus is None:
            with training_args.main_process_first(desc="corpus"):
                corpus = check_corpus(data_args)
        train(
            model_args, data_args, dataclasses.replace(training_args, seed=seed, output_dir=str(run_dir)), corpus=corpus
        )
    return summarise_seeds(training_args.output_dir, seeds)


def summarise_seeds(output_dir: str | Path, seeds: list[int]) -> dict:
    """Mean and sample standard deviation of validation and test WA / UA / macro-F1 over the seeds' result files;
    written to `seeds_summary.json` and `seeds_summary.md` in `output_dir`."""
    per_seed = {}
    for seed in seeds:
        results = {}
        for name in RESULT_FILES:
            path = seed_dir(output_dir, seed) / name
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: the run for seed {seed} did not finish")
            results.update(json.loads(path.read_text()))
        per_seed[seed] = {key: results[key] for key in SUMMARY_METRICS if key in results}
    metrics = {}
    for key in SUMMARY_METRICS:
        values = [per_seed[seed][key] for seed in seeds if key in per_seed[seed]]
        if len(values) == len(seeds):
            mean, std = mean_std(values)
            metrics[key] = {"mean": mean, "std": std, "values": values}
    summary = {"seeds": seeds, "runs": [str(seed_dir(output_dir, seed)) for seed in seeds], "metrics": metrics}
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    (Path(output_dir) / "seeds_summary.json").write_text(json.dumps(summary, indent=2))
    (Path(output_dir) / "seeds_summary.md").write_text(summary_markdown(summary))
    return summary


def summary_markdown(summary: dict) -> str:
    seeds = summary["seeds"]
    lines = [
        f"Mean ± sample standard deviation over {len(seeds)} seed(s).",
        "",
        "| metric | mean ± std | " + " | ".join(f"seed {seed}" for seed in seeds) + " |",
        "|---|---|" + "---|" * len(seeds),
    ]
    for key, stats in summary["metrics"].items():
        spread = "n/a" if stats["std"] is None else f"{stats['std']:.4f}"
        cells = " | ".join(f"{value:.4f}" for value in stats["values"])
        lines.append(f"| {key} | {stats['mean']:.4f} ± {spread} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> dict:
    seeds, rest = split_seeds_argv(list(argv or []))
    summary = run_seeds(rest, seeds)
    print(summary_markdown(summary))
    return summary
