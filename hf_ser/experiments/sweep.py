"""Hyperparameter sweeps over recipe keys, chosen on validation speakers only.

    hf-ser sweep RECIPE.yaml --space SPACE.yaml --trials N [--backend optuna|ray] [--cv K] [--final] [--key value ...]

Every trial is one recipe (`RECIPE.yaml` + overrides + the trial's values) written to `<output_dir>/trial-NNNN/
recipe.yaml` and trained there by `hf_ser.train(..., evaluate_test=False)`: the test split is never predicted during
the search, and the objective reads validation metrics only (`validation_objective` refuses any `test_*` key). With
`--cv K` a trial trains K folds whose validation speakers are K speaker-disjoint groups of the non-test speakers, and
its objective is their mean. Hopeless trials stop early (Optuna's MedianPruner on the validation reports). The study
lives in `<output_dir>/study.db` (Optuna's SQLite storage), so the same command run again continues it up to N
finished trials. At the end: `sweep_summary.json` / `.md` and `best_recipe.yaml`, which `hf-ser train` and `hf-ser cv`
run as is; `--final` trains it once with its test speakers scored, into `<output_dir>/final`. `--backend ray` runs the
same trials under Ray Tune (`hf_ser.experiments.sweep_ray`).

Why Optuna's study API and not `Trainer.hyperparameter_search`: the Trainer's search changes only what a `Trainer`
and its `model_init` see, but a trial here is a whole recipe (data keys such as `max_duration_seconds`, model keys
such as `head_hidden_sizes`, several folds under `--cv`) and `hf_ser.train` builds its own Trainer from the three
argument dataclasses; an objective over `hf_ser.train` keeps one training path for runs, CV folds and trials.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import yaml
from transformers import TrainerCallback

from hf_ser.arguments import DataArguments, load_recipe, parse_args, recipe_keys, refuse_dimensional
from hf_ser.data.dataset import CheckedCorpus, check_corpus
from hf_ser.experiments.cross_validation import Fold, corpus_speaker_items, fold_data_args, fold_test_speakers
from hf_ser.train import train

logger = logging.getLogger(__name__)

STUDY_FILE = "study.db"
STUDY_NAME = "hf-ser-sweep"
TRIAL_RECIPE_FILE = "recipe.yaml"
TRIAL_RESULT_FILE = "trial.json"
BEST_RECIPE_FILE = "best_recipe.yaml"
SUMMARY_FILE = "sweep_summary.json"
FINAL_DIR = "final"
SPACE_TYPES = {
    "float": {"low", "high", "log", "step"},
    "int": {"low", "high", "log", "step"},
    "categorical": {"choices"},
}
# Recipe keys whose value is a mapping: the space may set one entry of it, e.g. `model_config.dropout`.
MAPPING_KEYS = ("model_config", "backbone_config", "backbone_overrides", "peft", "label_map")


def trial_dir(sweep_dir: Path, number: int) -> Path:
    return Path(sweep_dir) / f"trial-{number:04d}"


def load_space(path: str | Path) -> dict[str, dict]:
    """The search space of a YAML file: recipe key -> `{type: float | int, low, high[, log, step]}` or
    `{type: categorical, choices: [...]}` (a plain list is short for categorical). Refuses unknown keys and types."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"search space {str(path)!r} does not exist")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: a search space is a non-empty mapping of recipe keys to ranges or choices")
    known = recipe_keys()
    space = {}
    for key, spec in raw.items():
        head, _, entry = str(key).partition(".")
        if head not in known or (entry and head not in MAPPING_KEYS):
            raise ValueError(
                f"{path}: {key!r} is not a recipe key (`hf-ser train --help` lists them; one entry of "
                f"{', '.join(MAPPING_KEYS)} is written `key.entry`)"
            )
        spec = {"type": "categorical", "choices": spec} if isinstance(spec, list) else spec
        if not isinstance(spec, dict) or spec.get("type") not in SPACE_TYPES:
            raise ValueError(f"{path}: {key}: give `type: float`, `type: int` or `type: categorical` (or a list)")
        unknown = set(spec) - SPACE_TYPES[spec["type"]] - {"type"}
        if unknown:
            raise ValueError(f"{path}: {key}: unknown field(s) {sorted(unknown)} for type {spec['type']}")
        if spec["type"] == "categorical":
            if not isinstance(spec.get("choices"), list) or not spec["choices"]:
                raise ValueError(f"{path}: {key}: `choices` must be a non-empty list")
        else:
            number = float if spec["type"] == "float" else int
            low, high = spec.get("low"), spec.get("high")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low >= high:
                raise ValueError(f"{path}: {key}: needs numbers `low` < `high`, got low={low!r}, high={high!r}")
            if number is int and not all(float(v).is_integer() for v in (low, high)):
                raise ValueError(f"{path}: {key}: type int needs integer bounds, got {low!r}, {high!r}")
            if spec.get("log") and low <= 0:
                raise ValueError(f"{path}: {key}: `log: true` needs low > 0")
            spec = {**spec, "low": number(low), "high": number(high)}
        space[str(key)] = spec
    return space


def suggest(trial, space: dict[str, dict]) -> dict[str, Any]:
    """The trial's value of every key of the space."""
    params = {}
    for key, spec in space.items():
        if spec["type"] == "float":
            params[key] = trial.suggest_float(
                key, spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step")
            )
        elif spec["type"] == "int":
            params[key] = trial.suggest_int(
                key, spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step", 1)
            )
        else:
            # Optuna stores only None/bool/int/float/str choices: a list or mapping (e.g. head sizes) goes as JSON.
            choices = {json.dumps(c) if isinstance(c, (list, dict)) else c: c for c in spec["choices"]}
            params[key] = choices[trial.suggest_categorical(key, list(choices))]
    return params


def apply_params(recipe: dict, params: dict[str, Any]) -> dict:
    """`recipe` with the trial's values (`key.entry` updates one entry of a mapping-valued key)."""
    recipe = dict(recipe)
    for key, value in params.items():
        head, _, entry = key.partition(".")
        if not entry:
            recipe[key] = value
            continue
        mapping = recipe.get(head) or {}
        mapping = json.loads(mapping) if isinstance(mapping, str) else dict(mapping)
        if not isinstance(mapping, dict):
            raise ValueError(f"space key {key!r}: recipe key {head!r} is not a mapping ({mapping!r})")
        recipe[head] = {**mapping, entry: value}
    return recipe


def _as_written(token: str) -> Any:
    """A command-line value for a recipe file: a number that reads back as written (`7`, `0.5`, not `04`) or JSON
    (`{...}`, `[...]`) as itself; anything else the string, which the recipe parser converts by field type."""
    try:
        value = yaml.safe_load(token)
    except yaml.YAMLError:
        return token
    if isinstance(value, (int, float)) and not isinstance(value, bool) and str(value) == token:
        return value
    if isinstance(value, (dict, list)) and token.lstrip()[:1] in ("{", "["):
        return value
    return {"true": True, "false": False}.get(token, token)


def overrides_as_recipe(tokens: list[str]) -> dict:
    """Command-line overrides (`--key value [value ...]`, `--key=value`, a bare `--flag`) as recipe entries."""
    recipe: dict[str, Any] = {}
    key = None
    for token in tokens:
        if token.startswith("--"):
            key, _, value = token[2:].partition("=")
            key = key.replace("-", "_")
            recipe[key] = [value] if value else []
        elif key is None:
            raise ValueError(f"command line: {token!r} comes before any --key")
        else:
            recipe[key].append(token)
    return {k: (_as_written(v[0]) if len(v) == 1 else [_as_written(t) for t in v] or True) for k, v in recipe.items()}


def validation_objective(results: dict, metric: str) -> float:
    """The trial's score: the validation (`eval_`) value of `metric`. A test metric among `results` is refused, so a
    sweep cannot select on test speakers."""
    leaked = sorted(key for key in results if key.startswith("test_"))
    if leaked:
        raise RuntimeError(f"a sweep objective received test metrics {leaked}: trials must score validation only")
    key = f"eval_{metric}"
    if key not in results:
        raise KeyError(f"the trial's validation results have no {key!r} (metric_for_best_model: {metric})")
    return float(results[key])


Report = Callable[[float, int], None]  # (validation score, report number): the backend may stop the trial


def optuna_report(trial, metric: str) -> Report:
    """Reports to an Optuna trial; raises `optuna.TrialPruned` when its pruner says so."""
    import optuna

    def report(value: float, step: int) -> None:
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"validation {metric} {value:.4f} at report {step}")

    return report


class ValidationPruningCallback(TrainerCallback):
    """Hands each validation evaluation's score to the backend's `report`, which stops the trial when its pruning rule
    says so."""

    def __init__(self, report: Report, metric: str):
        self.report, self.metric, self.evaluations = report, metric, 0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.evaluations += 1
        self.report(validation_objective(metrics or {}, self.metric), self.evaluations)


def sweep_folds(data_args: DataArguments, k: int, seed: int) -> list[Fold]:
    """K folds over the recipe's non-test speakers: each validates on one speaker-disjoint group (the grouping of
    `hf-ser cv --folds K`) and trains on the others; the recipe's test speakers stay out of every fold."""
    if not data_args.test_speakers:
        raise ValueError(
            "--cv K needs test_speakers in the recipe: the folds validate on the other speakers, and the test "
            "speakers stay unseen until the final run"
        )
    test = list(data_args.test_speakers)
    items = {s: n for s, n in corpus_speaker_items(data_args).items() if s not in test}
    groups = fold_test_speakers(items, str(k), seed)
    return [Fold(i, test, group, sorted(s for s in items if s not in group)) for i, group in enumerate(groups)]


@dataclass
class Sweep:
    """One search: the base recipe (recipe file + overrides), its space, where it lives and how trials are scored."""

    command: list[str]
    recipe: dict
    space: dict[str, dict]
    sweep_dir: Path
    metric: str
    maximize: bool
    folds: Optional[list[Fold]]
    checked_corpus: Optional[CheckedCorpus] = None  # decoded on the first trial, split again by the others

    def objective(self, trial) -> float:
        """Optuna's objective: the trial's values, trained and scored by `run_trial`."""
        params = suggest(trial, self.space)
        trial.set_user_attr("run_dir", str(trial_dir(self.sweep_dir, trial.number)))
        return self.run_trial(trial.number, params, optuna_report(trial, self.metric))

    def run_trial(self, number: int, params: dict[str, Any], report: Report) -> float:
        """Train trial `number`'s recipe (each fold under `--cv`) in its folder and return its validation score;
        every validation score (each evaluation, or the running mean after each fold) goes to `report` first."""
        run_dir = trial_dir(self.sweep_dir, number)
        run_dir.mkdir(parents=True, exist_ok=True)
        recipe_path = run_dir / TRIAL_RECIPE_FILE
        recipe_path.write_text(yaml.safe_dump({**apply_params(self.recipe, params), "output_dir": str(run_dir)}))
        model_args, data_args, training_args = parse_args([str(recipe_path)])
        training_args.push_to_hub = False  # a trial is never published
        corpus = self.shared_corpus(data_args)
        started = time.perf_counter()
        if self.folds is None:
            callbacks = [ValidationPruningCallback(report, self.metric)]
            results = train(model_args, data_args, training_args, callbacks, corpus=corpus, evaluate_test=False)
            fold_values, value = None, validation_objective(results, self.metric)
        else:
            fold_values = []
            for fold in self.folds:
                fold_args = replace(training_args, output_dir=str(run_dir / fold.name))
                fold_data = fold_data_args(data_args, fold)
                results = train(model_args, fold_data, fold_args, corpus=corpus, evaluate_test=False)
                fold_values.append(validation_objective(results, self.metric))
                report(float(np.mean(fold_values)), fold.index + 1)  # pruned between folds on the running mean
            value = float(np.mean(fold_values))
        record = {
            "params": params,
            "value": value,
            "fold_values": fold_values,
            "wall_seconds": time.perf_counter() - started,
        }
        (run_dir / TRIAL_RESULT_FILE).write_text(json.dumps(record, indent=2))
        return value

    def shared_corpus(self, data_args: DataArguments) -> Optional[CheckedCorpus]:
        """The corpus decoded once for every trial, or None when the space changes data keys (then each trial reads
        its own)."""
        data_keys = {f.name for f in fields(DataArguments)}
        if any(key.split(".")[0] in data_keys for key in self.space):
            return None
        return self._corpus(data_args)

    def _corpus(self, data_args: DataArguments) -> CheckedCorpus:
        if self.checked_corpus is None:
            self.checked_corpus = check_corpus(data_args)
        return self.checked_corpus


def _open_study(sweep: Sweep, storage: str, seed: int):
    """Create the study, or load it and check it was made by the same command and space."""
    import optuna

    fresh = not (sweep.sweep_dir / STUDY_FILE).is_file() and storage == _default_storage(sweep.sweep_dir)
    if fresh and any(sweep.sweep_dir.glob("trial-*")):
        raise FileExistsError(
            f"{sweep.sweep_dir} holds trial folders but no {STUDY_FILE}: use another --output_dir, or delete them"
        )
    sweep.sweep_dir.mkdir(parents=True, exist_ok=True)
    # The heartbeat lets Optuna fail a trial whose process was killed (no exception, so no FAIL written), and the
    # callback queues its values again, so a rerun of the command retries the interrupted configuration.
    rdb = optuna.storages.RDBStorage(
        storage,
        heartbeat_interval=60,
        grace_period=180,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
    )
    study = optuna.create_study(
        storage=rdb,
        study_name=STUDY_NAME,
        direction="maximize" if sweep.maximize else "minimize",
        pruner=optuna.pruners.MedianPruner(),
        load_if_exists=True,
    )
    made_by = {"command": sweep.command, "space": sweep.space, "cv": len(sweep.folds) if sweep.folds else None}
    previous = study.user_attrs.get("made_by")
    if previous is None:
        study.set_user_attr("made_by", made_by)
    elif json.loads(json.dumps(previous)) != json.loads(json.dumps(made_by)):
        raise ValueError(
            f"the study in {storage} was made by another command or space (`{' '.join(previous['command'])}`); rerun "
            "that command, or use another --output_dir"
        )
    # A sampler seeded by the recipe's seed and the trials so far: reproducible, and a resumed study does not
    # propose its first trials again.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def _default_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{(Path(sweep_dir) / STUDY_FILE).absolute()}"


FINISHED_STATES = ("COMPLETE", "PRUNED")


BACKENDS = ("optuna", "ray")


def run_sweep(
    argv: list[str],
    space_path: str | Path,
    trials: int,
    cv: Optional[int] = None,
    final: bool = False,
    storage: Optional[str] = None,
    backend: str = "optuna",
    ray_options: Optional[dict] = None,
) -> dict:
    """Run (or continue) the search until `trials` trials have finished, then write the summary and the best recipe;
    with `final`, train the best recipe once and score its test speakers. `backend="ray"` schedules the same trials
    with Ray Tune (`hf_ser.experiments.sweep_ray`; `ray_options` are its resources and cluster address)."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: give one of {', '.join(BACKENDS)}")
    if backend == "ray" and storage:
        raise ValueError("--storage is Optuna's study URL; --backend ray keeps its experiment in OUTPUT_DIR/ray")
    argv = list(argv)
    space = load_space(space_path)
    has_file = bool(argv) and argv[0].endswith((".yaml", ".yml"))
    overrides = overrides_as_recipe(argv[1:] if has_file else argv)
    recipe = {**(load_recipe(argv[0]) if has_file else {}), **overrides}
    clash = sorted(set(overrides) & {key.split(".")[0] for key in space})
    if clash:
        raise ValueError(f"{clash}: set on the command line and searched by {space_path}; drop one of them")
    _, data_args, training_args = parse_args(argv)
    refuse_dimensional(data_args, "sweep")
    if trials < 1:
        raise ValueError(f"--trials {trials}: give at least 1")
    sweep = Sweep(
        command=["hf-ser", "sweep", *argv, "--space", str(space_path)]
        + (["--cv", str(cv)] if cv else [])
        + (["--backend", backend] if backend != "optuna" else []),
        recipe=recipe,
        space=space,
        sweep_dir=Path(training_args.output_dir),
        metric=training_args.metric_for_best_model,
        maximize=bool(training_args.greater_is_better),
        folds=sweep_folds(data_args, cv, training_args.seed) if cv else None,
    )
    if backend == "ray":
        from hf_ser.experiments.sweep_ray import run_ray_sweep

        rows, storage = run_ray_sweep(sweep, trials, training_args.seed, data_args, **(ray_options or {}))
    else:
        rows, storage = run_optuna_sweep(sweep, trials, training_args.seed, storage)
    summary = summarise_sweep(rows, sweep, storage)
    if final:
        summary["final"] = train_best(sweep.sweep_dir)
        write_sweep_summary(sweep.sweep_dir, summary)
    return summary


def run_optuna_sweep(sweep: Sweep, trials: int, seed: int, storage: Optional[str]) -> tuple[list[dict], str]:
    """Optuna's study (SQLite in the sweep folder unless `storage` names another) run until `trials` trials have
    finished; the table's rows and the storage."""
    import optuna

    storage = storage or _default_storage(sweep.sweep_dir)
    study = _open_study(sweep, storage, seed)
    states = tuple(getattr(optuna.trial.TrialState, name) for name in FINISHED_STATES)
    done = len(study.get_trials(deepcopy=False, states=states))
    if done < trials:
        logger.info("study %s: %d of %d trials finished; running the rest", storage, done, trials)
        # MaxTrialsCallback stops at `trials` finished trials also when several workers share one storage.
        study.optimize(
            sweep.objective, n_trials=trials - done, callbacks=[optuna.study.MaxTrialsCallback(trials, states=states)]
        )
    return [optuna_row(trial, sweep.metric) for trial in study.trials], storage


def trial_row(number: int, state: str, metric: str, value, run_dir, last_report, wall_seconds, params=None) -> dict:
    """One row of the trials table; values, fold scores and wall time come from the trial's `trial.json` when it
    finished."""
    record_file = Path(run_dir or "") / TRIAL_RESULT_FILE
    record = json.loads(record_file.read_text()) if run_dir and record_file.is_file() else {}
    return {
        "trial": number,
        "state": state,
        f"validation_{metric}": value,
        "params": record.get("params", params or {}),
        "fold_values": record.get("fold_values"),
        "last_report": last_report,
        "run_dir": None if run_dir is None else str(run_dir),
        "wall_seconds": wall_seconds,
    }


def optuna_row(trial, metric: str) -> dict:
    wall = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
    reports = trial.intermediate_values
    last = reports[max(reports)] if reports else None
    run_dir = trial.user_attrs.get("run_dir")
    return trial_row(trial.number, trial.state.name, metric, trial.value, run_dir, last, wall, trial.params)


def summarise_sweep(rows: list[dict], sweep: Sweep, storage: str) -> dict:
    """The trials table, the best completed trial and `best_recipe.yaml` (`sweep_summary.json` / `.md`)."""
    metric_key = f"validation_{sweep.metric}"
    complete = [row for row in rows if row["state"] == "COMPLETE"]
    if not complete:
        raise ValueError(f"no trial of the study in {storage} completed (see {sweep.sweep_dir}/trial-*/)")
    best = (max if sweep.maximize else min)(complete, key=lambda row: row[metric_key])
    best_recipe = yaml.safe_load((Path(best["run_dir"]) / TRIAL_RECIPE_FILE).read_text())
    best_recipe["output_dir"] = str(sweep.sweep_dir / FINAL_DIR)
    header = (
        f"# Best of {len(complete)} completed trials of `{' '.join(sweep.command)} --trials {len(rows)}`: trial "
        f"{best['trial']}, validation {sweep.metric} {best[metric_key]:.4f}"
        + (f" (mean over {len(sweep.folds)} folds)" if sweep.folds else "")
        + ".\n# Its test score, once: hf-ser train THIS_FILE (or hf-ser cv THIS_FILE --folds ... --output_dir DIR for a CV estimate).\n"
    )
    (sweep.sweep_dir / BEST_RECIPE_FILE).write_text(header + yaml.safe_dump(best_recipe, sort_keys=False))
    summary = {
        "command": sweep.command,
        "storage": storage,
        "objective": f"validation {sweep.metric}"
        + (f", mean over {len(sweep.folds)} speaker-disjoint folds of the non-test speakers" if sweep.folds else "")
        + f" ({'maximised' if sweep.maximize else 'minimised'}); test speakers never scored during the search",
        "space": sweep.space,
        "folds": [
            {"validation_speakers": f.validation_speakers, "train_speakers": f.train_speakers} for f in sweep.folds
        ]
        if sweep.folds
        else None,
        "trials": rows,
        "best": {"trial": best["trial"], metric_key: best[metric_key], "params": best["params"]},
        "best_recipe": str(sweep.sweep_dir / BEST_RECIPE_FILE),
        "final": None,
    }
    write_sweep_summary(sweep.sweep_dir, summary)
    return summary


def train_best(sweep_dir: Path) -> dict:
    """Train `best_recipe.yaml` once, scoring its test speakers (refused when its folder holds a finished run)."""
    recipe = Path(sweep_dir) / BEST_RECIPE_FILE
    model_args, data_args, training_args = parse_args([str(recipe)])
    results = train(model_args, data_args, training_args)
    return {"run_dir": training_args.output_dir, **{k: v for k, v in results.items() if k.startswith("test_")}}


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


def write_sweep_summary(sweep_dir: Path, summary: dict) -> None:
    (Path(sweep_dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    metric_key = next(key for key in summary["best"] if key.startswith("validation_"))
    keys = list(summary["space"])
    lines = [
        f"# Sweep: {len(summary['trials'])} trials",
        "",
        f"`{' '.join(summary['command'])}`",
        "",
        f"Objective: {summary['objective']}. Study: `{summary['storage']}`.",
        "",
        f"**Best: trial {summary['best']['trial']}, {metric_key.replace('_', ' ')} {summary['best'][metric_key]:.4f}** "
        f"(`{summary['best_recipe']}`).",
        "",
        "| trial | state | " + metric_key.replace("_", " ") + " | " + " | ".join(keys) + " | wall s |",
        "|---:|---|---:|" + "---|" * len(keys) + "---:|",
    ]
    for row in summary["trials"]:
        value = row[metric_key]
        score = (
            f"{value:.4f}"
            if value is not None
            else f"({row['last_report']:.4f} when pruned)"
            if row["last_report"] is not None
            else "–"
        )
        cells = " | ".join(_cell(row["params"].get(key)) for key in keys)
        wall = f"{row['wall_seconds']:.0f}" if row["wall_seconds"] is not None else "–"
        lines.append(f"| {row['trial']} | {row['state']} | {score} | {cells} | {wall} |")
    final = summary.get("final")
    lines += ["", "## Test score of the best recipe", ""]
    if final:
        lines.append(
            f"Trained once with `hf-ser train {summary['best_recipe']}` into `{final['run_dir']}`: test UA "
            f"{100 * final['test_ua']:.2f} %, WA {100 * final['test_wa']:.2f} %."
        )
    else:
        lines.append(f"Not computed yet: `hf-ser train {summary['best_recipe']}` (or rerun the sweep with `--final`).")
    (Path(sweep_dir) / "sweep_summary.md").write_text("\n".join(lines) + "\n")


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="hf-ser sweep",
        usage="hf-ser sweep RECIPE.yaml --space SPACE.yaml --trials N [--backend optuna|ray] [--cv K] [--final] "
        "[--key value ...]",
        allow_abbrev=False,
        description="Search recipe values on validation speakers (Optuna, or Ray Tune with Optuna's sampler; pruning "
        "by the median rule). Every other option is a recipe override; `--output_dir` is the sweep folder (study.db "
        "or ray/, trial-NNNN/, best_recipe.yaml).",
    )
    parser.add_argument("--space", required=True, help="YAML: recipe key -> {type: float|int|categorical, ...}")
    parser.add_argument("--trials", type=int, required=True, help="finished trials the study should have in all")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="optuna",
        help="optuna (default; the `sweep` extra) or ray (Ray Tune schedules the trials; the `sweep-ray` extra)",
    )
    parser.add_argument("--cv", type=int, metavar="K", help="objective: mean validation score over K folds")
    parser.add_argument("--final", action="store_true", help="then train the best recipe once, scoring test")
    parser.add_argument("--storage", help=f"an Optuna storage URL shared by workers (default: OUTPUT_DIR/{STUDY_FILE})")
    ray_group = parser.add_argument_group("--backend ray")
    ray_group.add_argument(
        "--ray_address",
        help="a running Ray cluster to use (`ray start --head` prints it; default: RAY_ADDRESS, else a Ray instance "
        "of this machine, started and stopped by the sweep)",
    )
    ray_group.add_argument(
        "--cpus_per_trial",
        type=float,
        help="CPUs Ray reserves for each trial (default: all CPUs of this machine, so one trial at a time; 1 on a "
        "cluster)",
    )
    ray_group.add_argument(
        "--gpus_per_trial", type=float, help="GPUs Ray reserves for each trial (default: 1 if the cluster has GPUs)"
    )
    args, train_argv = parser.parse_known_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    ray_options = {"address": args.ray_address, "cpus": args.cpus_per_trial, "gpus": args.gpus_per_trial}
    if args.backend == "ray":
        import ray  # noqa: F401  (a missing extra is reported before any work; ray's OptunaSearch needs optuna too)
    elif any(value is not None for value in ray_options.values()):
        raise ValueError("--ray_address, --cpus_per_trial and --gpus_per_trial are options of --backend ray")
    import optuna  # noqa: F401

    summary = run_sweep(
        train_argv,
        args.space,
        args.trials,
        cv=args.cv,
        final=args.final,
        storage=args.storage,
        backend=args.backend,
        ray_options=ray_options,
    )
    best = summary["best"]
    print(f"best: trial {best['trial']} {best['params']} -> {summary['best_recipe']}")
    return summary
