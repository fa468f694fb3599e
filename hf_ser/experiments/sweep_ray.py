"""The Ray Tune backend of `hf-ser sweep` (`--backend ray`): the trials of the Optuna backend, scheduled by Ray.

Each trial is `Sweep.run_trial` in a Ray worker: the same recipe in the same `trial-NNNN/` folder, the same
validation-only objective and reports (`validation_objective`), the same `trial.json`. Ray Tune's own API is used
(`Tuner` with `OptunaSearch` over the space's own `suggest`, and `MedianStoppingRule`), not
`Trainer.hyperparameter_search(backend="ray")`, for the reason in `hf_ser.experiments.sweep`'s docstring: a trial is a
whole recipe, trained by `hf_ser.train`. Ray's experiment (its state, one folder per trial with Ray's `result.json`)
lives in `<output_dir>/ray/`, and the same command run again restores it (`Tuner.restore`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

from hf_ser.arguments import DataArguments
from hf_ser.experiments.sweep import (
    STUDY_FILE,
    TRIAL_RESULT_FILE,
    Sweep,
    suggest,
    trial_dir,
    trial_row,
)

logger = logging.getLogger(__name__)

RAY_DIR = "ray"  # Ray Tune's experiment folder inside the sweep folder
MADE_BY_FILE = "ray_sweep.json"  # the command, space and trials a rerun must match
TRIAL_NUMBER = "trial_number"  # the Optuna trial number behind Ray's trial: its folder is trial-NNNN
# A Ray instance of this machine keeps its sockets and session logs here (Ray's socket paths must stay short, so not
# under a deep output folder).
RAY_TEMP_DIR = Path(tempfile.gettempdir()) / "hf-ser-ray"
# Optuna's MedianPruner defaults: no stop before 5 trials have reported as far, from the first report on; and a trial
# never yields to the next one while that many are missing (a paused trial would restart: no Ray checkpoints).
MEDIAN_RULE = {
    "time_attr": "training_iteration",
    "grace_period": 1,
    "min_samples_required": 5,
    "min_time_slice": float("inf"),
}


def suggest_with_number(trial, space: dict[str, dict]) -> dict[str, Any]:
    """OptunaSearch's define-by-run space: the values the Optuna backend would suggest, and the trial's number."""
    return {**suggest(trial, space), TRIAL_NUMBER: trial.number}


def ray_trial(config: dict, sweep: Sweep, launch_dir: str) -> None:
    """One trial in a Ray worker: `Sweep.run_trial` with each validation score reported to Ray Tune, then the
    objective as the trial's last report."""
    from ray import tune

    os.chdir(launch_dir)  # Ray starts a worker in its own folder; the recipe's relative paths are the command's
    params = {key: value for key, value in config.items() if key != TRIAL_NUMBER}
    metric_key = f"validation_{sweep.metric}"

    def report(value: float, step: int) -> None:
        tune.report({metric_key: value, "report": step})  # the scheduler stops the worker here when it says so

    value = sweep.run_trial(config[TRIAL_NUMBER], params, report)
    tune.report({metric_key: value, "report": "final"})


def _check_folder(sweep: Sweep, made_by: dict, restorable: bool) -> None:
    made_by_file = sweep.sweep_dir / MADE_BY_FILE
    if (sweep.sweep_dir / STUDY_FILE).is_file():
        raise FileExistsError(f"{sweep.sweep_dir} holds an Optuna study ({STUDY_FILE}): use another --output_dir")
    if not restorable:
        if any(sweep.sweep_dir.glob("trial-*")):
            raise FileExistsError(
                f"{sweep.sweep_dir} holds trial folders but no Ray experiment ({RAY_DIR}/): use another "
                "--output_dir, or delete them"
            )
        sweep.sweep_dir.mkdir(parents=True, exist_ok=True)
        made_by_file.write_text(json.dumps(made_by, indent=2))
        return
    previous = json.loads(made_by_file.read_text()) if made_by_file.is_file() else None
    if previous != json.loads(json.dumps(made_by)):
        was = f"`{' '.join(previous['command'])} --trials {previous['trials']}`" if previous else "unknown"
        raise ValueError(
            f"the Ray experiment in {sweep.sweep_dir / RAY_DIR} was made by another command, space or --trials ({was}); "
            "Ray Tune restores an experiment as it was started: rerun that command, or use another --output_dir"
        )


def run_ray_sweep(
    sweep: Sweep,
    trials: int,
    seed: int,
    data_args: DataArguments,
    address: Optional[str] = None,
    cpus: Optional[float] = None,
    gpus: Optional[float] = None,
) -> tuple[list[dict], str]:
    """Run `trials` trials with Ray Tune (or restore and finish the experiment of the same command) on a Ray instance
    of this machine, or on the cluster at `address`; the table's rows and the experiment folder."""
    import ray
    from ray import tune
    from ray.tune.schedulers import MedianStoppingRule
    from ray.tune.search.optuna import OptunaSearch

    experiment = (sweep.sweep_dir / RAY_DIR).absolute()
    metric_key = f"validation_{sweep.metric}"
    made_by = {"command": sweep.command, "space": sweep.space, "trials": trials}
    restorable = tune.Tuner.can_restore(str(experiment))
    _check_folder(sweep, made_by, restorable)
    sweep.shared_corpus(data_args)  # decoded here once; every trial gets it through Ray's object store

    address = address or os.environ.get("RAY_ADDRESS")
    started_here = not ray.is_initialized()
    if started_here and address:
        ray.init(address=address)
    elif started_here:
        # This machine only: its CPUs, no dashboard, the session files in RAY_TEMP_DIR.
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=str(RAY_TEMP_DIR))
    try:
        resources = ray.cluster_resources()
        per_trial = {
            "cpu": cpus if cpus is not None else (1 if address else resources.get("CPU", 1)),
            "gpu": gpus if gpus is not None else (1 if resources.get("GPU") else 0),
        }
        logger.info("Ray: %s in all, %s per trial", resources, per_trial)
        trainable = tune.with_resources(tune.with_parameters(ray_trial, sweep=sweep, launch_dir=os.getcwd()), per_trial)
        if restorable:
            logger.info("restoring the Ray experiment %s", experiment)
            # An errored trial (the sweep stopped on it) trains again in its folder after a fix.
            tuner = tune.Tuner.restore(str(experiment), trainable, restart_errored=True)
        else:
            mode = "max" if sweep.maximize else "min"
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    num_samples=trials,
                    search_alg=OptunaSearch(
                        functools.partial(suggest_with_number, space=sweep.space),
                        metric=metric_key,
                        mode=mode,
                        seed=seed,
                    ),
                    scheduler=MedianStoppingRule(metric=metric_key, mode=mode, **MEDIAN_RULE),
                ),
                run_config=tune.RunConfig(
                    storage_path=str(experiment.parent),
                    name=RAY_DIR,
                    failure_config=tune.FailureConfig(fail_fast=True),  # a trial that raises stops the sweep
                    verbose=1,
                ),
            )
        results = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    rows = []
    for result in results:
        number = result.config[TRIAL_NUMBER]
        run_dir = trial_dir(sweep.sweep_dir, number)
        if result.error is not None:
            last_line = str(result.error).strip().splitlines()[-1]
            raise RuntimeError(f"trial {number} failed ({run_dir}; Ray's log in {result.path}): {last_line}")
        # Ray ends a trial stopped by its scheduler without a word: only a finished trial wrote trial.json.
        finished = (run_dir / TRIAL_RESULT_FILE).is_file()
        value = json.loads((run_dir / TRIAL_RESULT_FILE).read_text())["value"] if finished else None
        params = {key: v for key, v in result.config.items() if key != TRIAL_NUMBER}
        state, last, wall = (
            "COMPLETE" if finished else "PRUNED",
            result.metrics.get(metric_key),
            result.metrics.get("time_total_s"),
        )
        rows.append(trial_row(number, state, sweep.metric, value, run_dir, last, wall, params))
    return sorted(rows, key=lambda row: row["trial"]), str(experiment)
