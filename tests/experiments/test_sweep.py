import json
import sys

import optuna
import pytest
import yaml
from conftest import REPO_ROOT, corpus_args, tiny_argv

from hf_ser.arguments import parse_args
from hf_ser.cli import main as cli_main
from hf_ser.experiments import sweep
from hf_ser.experiments.sweep import (
    ValidationPruningCallback,
    apply_params,
    load_space,
    optuna_report,
    overrides_as_recipe,
    suggest,
    sweep_folds,
    validation_objective,
)


def _space(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_space_types_are_suggested_within_their_ranges(tmp_path):
    space = load_space(
        _space(
            tmp_path,
            "learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
            "per_device_train_batch_size: {type: int, low: 8, high: 32, step: 8}\n"
            "head_hidden_sizes: [[16, 8], [32]]\n"
            "model_config.dropout: {type: categorical, choices: [0.1, 0.3]}\n",
        )
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        params = suggest(study.ask(), space)
        assert 1e-4 <= params["learning_rate"] <= 1e-2
        assert params["per_device_train_batch_size"] in (8, 16, 24, 32)
        assert params["head_hidden_sizes"] in ([16, 8], [32])  # lists travel through Optuna as JSON, come back lists
        assert params["model_config.dropout"] in (0.1, 0.3)
    recipe = apply_params({"model_config": {"feature_type": "mfcc"}, "seed": 1}, params)
    assert recipe["model_config"] == {"feature_type": "mfcc", "dropout": params["model_config.dropout"]}


@pytest.mark.parametrize(
    "text, message",
    [
        ("learning_rat: [1, 2]\n", "'learning_rat' is not a recipe key"),
        ("seed.x: [1, 2]\n", "'seed.x' is not a recipe key"),
        ("learning_rate: {type: float, low: 0.1, high: 0.01}\n", "needs numbers `low` < `high`"),
        ("learning_rate: {type: float, low: 0, high: 1, log: true}\n", "needs low > 0"),
        ("seed: {type: int, low: 1, high: 2.5}\n", "integer bounds"),
        ("seed: {type: normal, mean: 1}\n", "give `type: float`"),
        ("seed: {type: int, low: 1, high: 3, choices: [1]}\n", "unknown field"),
        ("pooling: {type: categorical, choices: []}\n", "non-empty list"),
    ],
)
def test_bad_spaces_are_refused_naming_the_key(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_space(_space(tmp_path, text))


def test_command_line_overrides_become_recipe_values():
    tokens = ["--seed", "7", "--test_speakers", "04", "--head_hidden_sizes", "16", "8", "--learning_rate", "1e-3"]
    tokens += ["--backbone_config", '{"hidden_size": 32}', "--disable_tqdm", "--num_train_epochs=2", "--fp16", "false"]
    assert overrides_as_recipe(tokens) == {
        "seed": 7,
        "test_speakers": "04",  # not the YAML octal 4
        "head_hidden_sizes": [16, 8],
        "learning_rate": "1e-3",  # the recipe parser converts by field type
        "backbone_config": {"hidden_size": 32},
        "disable_tqdm": True,
        "num_train_epochs": 2,
        "fp16": False,
    }


def test_the_objective_reads_validation_only():
    assert validation_objective({"eval_ua": 0.5, "eval_wa": 0.6}, "ua") == 0.5
    with pytest.raises(RuntimeError, match="test metrics \\['test_ua'\\]"):
        validation_objective({"eval_ua": 0.5, "test_ua": 0.9}, "ua")
    with pytest.raises(KeyError, match="eval_ccc"):
        validation_objective({"eval_ua": 0.5}, "ccc")


def test_pruning_callback_stops_a_trial_below_the_median():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    good = study.ask()
    for step, value in enumerate([0.6, 0.7], start=1):
        good.report(value, step)
    study.tell(good, 0.7)
    callback = ValidationPruningCallback(optuna_report(study.ask(), "ua"), "ua")
    callback.on_evaluate(None, None, None, metrics={"eval_ua": 0.65})  # above the median at step 1: goes on
    with pytest.raises(optuna.TrialPruned, match="validation ua 0.1000 at report 2"):
        callback.on_evaluate(None, None, None, metrics={"eval_ua": 0.1})
    with pytest.raises(RuntimeError, match="test metrics"):
        ValidationPruningCallback(optuna_report(study.ask(), "ua"), "ua").on_evaluate(
            None, None, None, metrics={"test_ua": 0.9}
        )


def test_cv_folds_validate_on_disjoint_groups_of_the_non_test_speakers(tiny_corpus):
    folds = sweep_folds(corpus_args(tiny_corpus, test_speakers=["04"]), 3, seed=7)
    assert sorted(s for fold in folds for s in fold.validation_speakers) == ["01", "02", "03"]
    for fold in folds:
        assert fold.test_speakers == ["04"] and len(fold.validation_speakers) == 1
        assert sorted(fold.train_speakers + fold.validation_speakers) == ["01", "02", "03"]
    with pytest.raises(ValueError, match="--cv K needs test_speakers"):
        sweep_folds(corpus_args(tiny_corpus), 3, seed=7)


def test_ray_backend_without_ray_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as it does where ray is not installed
    space = _space(tmp_path, "learning_rate: [1.0e-3, 3.0e-3]\n")
    assert cli_main(["sweep", "recipes/demo.yaml", "--space", str(space), "--trials", "1", "--backend", "ray"]) == 2
    assert "ray is not installed; it comes with the `sweep-ray` extra: pip install 'hf-ser[sweep-ray]'" in (
        capsys.readouterr().err
    )


def test_ray_options_and_storage_belong_to_their_backends(tmp_path, capsys):
    space = _space(tmp_path, "learning_rate: [1.0e-3, 3.0e-3]\n")
    command = ["sweep", "recipes/demo.yaml", "--space", str(space), "--trials", "1"]
    assert cli_main([*command, "--cpus_per_trial", "2"]) == 2
    assert "are options of --backend ray" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--storage is Optuna's study URL"):
        sweep.run_sweep(["recipes/demo.yaml"], space, 1, storage="sqlite:///x.db", backend="ray")


@pytest.mark.slow
def test_sweep_selects_on_validation_resumes_and_scores_test_once(tiny_corpus, tmp_path, monkeypatch):
    sweep_dir = tmp_path / "sweep"
    argv = tiny_argv(tiny_corpus, sweep_dir)
    argv[argv.index("--learning_rate") : argv.index("--learning_rate") + 2] = []
    argv += ["--num_train_epochs", "1", "--max_train_samples", "8"]
    space = _space(tmp_path, "learning_rate: [1.0e-3, 3.0e-3]\n")
    seen = []  # every input of the search's objective

    def spy(results, metric):
        seen.append(dict(results))
        return validation_objective(results, metric)

    monkeypatch.setattr(sweep, "validation_objective", spy)
    command = ["sweep", *argv, "--space", str(space), "--trials"]

    assert cli_main([*command, "2"]) == 0  # interrupted after 2 trials ...
    first = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("trial-*/model.safetensors")}
    assert len(first) == 2
    assert cli_main([*command, "3", "--final"]) == 0  # ... and run again: one more trial, then the test score

    study = optuna.load_study(study_name=sweep.STUDY_NAME, storage=f"sqlite:///{sweep_dir / sweep.STUDY_FILE}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert sorted(p.name for p in sweep_dir.glob("trial-*")) == ["trial-0000", "trial-0001", "trial-0002"]
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in first.items())  # finished trials not trained again
    # the search saw validation metrics only, and no trial predicted its test split
    assert len(seen) >= 3 and all("eval_ua" in results for results in seen)
    assert not [key for results in seen for key in results if key.startswith("test_")]
    assert not list(sweep_dir.glob("trial-*/test_results.json"))
    assert {t.params["learning_rate"] for t in study.trials} <= {1e-3, 3e-3}

    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert [row["trial"] for row in summary["trials"]] == [0, 1, 2]
    assert summary["best"]["validation_ua"] == study.best_value == max(t.value for t in study.trials)
    for row in summary["trials"]:
        assert (
            row["validation_ua"]
            == json.loads((sweep_dir / row["run_dir"] / "eval_results.json").read_text())["eval_ua"]
        )
    best_recipe = sweep_dir / "best_recipe.yaml"
    assert yaml.safe_load(best_recipe.read_text())["learning_rate"] == study.best_params["learning_rate"]
    # the best recipe is an ordinary recipe: `hf-ser train best_recipe.yaml` parses it, and --final ran it once
    _, _, training_args = parse_args([str(best_recipe)])
    assert training_args.learning_rate == study.best_params["learning_rate"]
    final = json.loads((sweep_dir / "final" / "test_results.json").read_text())
    assert summary["final"]["test_ua"] == final["test_ua"]
    assert f"test UA {100 * final['test_ua']:.2f} %" in (sweep_dir / "sweep_summary.md").read_text()

    # another space in the same folder is refused instead of mixed into the study
    other = _space(tmp_path, "learning_rate: [1.0e-2, 3.0e-2]\n", "other.yaml")
    with pytest.raises(ValueError, match="made by another command or space"):
        sweep.run_sweep(argv, other, 3)


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "recipes" / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_search_spaces_load(path):
    assert load_space(path)


@pytest.mark.slow
def test_cv_objective_is_the_mean_fold_validation_score_in_a_given_storage(tiny_corpus, tmp_path, monkeypatch):
    sweep_dir, storage = tmp_path / "sweep", f"sqlite:///{tmp_path / 'shared.db'}"
    argv = tiny_argv(tiny_corpus, sweep_dir)
    argv[argv.index("--learning_rate") : argv.index("--learning_rate") + 2] = []
    argv += ["--num_train_epochs", "1", "--max_train_samples", "8"]
    space = _space(tmp_path, "learning_rate: [1.0e-3, 3.0e-3]\n")
    seen = []  # every input of the search's objective

    def spy(results, metric):
        seen.append(dict(results))
        return validation_objective(results, metric)

    monkeypatch.setattr(sweep, "validation_objective", spy)
    command = ["sweep", *argv, "--space", str(space), "--trials", "2", "--cv", "2", "--storage", storage]
    assert cli_main(command) == 0

    assert not (sweep_dir / sweep.STUDY_FILE).exists()  # the study is where --storage says
    study = optuna.load_study(study_name=sweep.STUDY_NAME, storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert summary["storage"] == storage
    # two speaker-disjoint folds of the non-test speakers 01-03; the test speaker 04 validates in none
    validating = [fold["validation_speakers"] for fold in summary["folds"]]
    assert sorted(s for group in validating for s in group) == ["01", "02", "03"]
    for trial in study.trials:
        fold_dirs = sorted((sweep_dir / f"trial-{trial.number:04d}").glob("fold-*"))
        assert [p.name for p in fold_dirs] == ["fold-00", "fold-01"]
        fold_ua = [json.loads((p / "eval_results.json").read_text())["eval_ua"] for p in fold_dirs]
        assert trial.value == pytest.approx(sum(fold_ua) / 2, abs=1e-12)
        assert summary["trials"][trial.number]["fold_values"] == fold_ua
        for fold_dir, group in zip(fold_dirs, validating):
            assert json.loads((fold_dir / "data_report.json").read_text())["splits"]["validation"]["speakers"] == group
    assert len(seen) == 4 and not [key for results in seen for key in results if key.startswith("test_")]
    assert not list(sweep_dir.glob("trial-*/fold-*/test_results.json"))

    # the same command again finds its 2 finished trials in that storage and trains nothing
    mtimes = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("trial-*/fold-*/model.safetensors")}
    assert len(mtimes) == 4
    assert cli_main(command) == 0
    assert len(optuna.load_study(study_name=sweep.STUDY_NAME, storage=storage).trials) == 2
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.glob("trial-*/fold-*/model.safetensors")} == mtimes


@pytest.mark.slow
def test_ray_backend_runs_the_same_trials_and_restores_its_experiment(tiny_corpus, tmp_path):
    pytest.importorskip("ray", reason="the Ray backend needs the `sweep-ray` extra (in `test`)")
    sweep_dir = tmp_path / "sweep"
    argv = tiny_argv(tiny_corpus, sweep_dir)
    argv[argv.index("--learning_rate") : argv.index("--learning_rate") + 2] = []
    argv += ["--num_train_epochs", "1", "--max_train_samples", "8"]
    space = _space(tmp_path, "learning_rate: [1.0e-3, 3.0e-3]\n")
    command = ["sweep", *argv, "--space", str(space), "--trials", "2", "--backend", "ray"]
    assert cli_main(command) == 0

    summary = json.loads((sweep_dir / "sweep_summary.json").read_text())
    assert summary["storage"] == str((sweep_dir / "ray").absolute())
    assert [(row["trial"], row["state"]) for row in summary["trials"]] == [(0, "COMPLETE"), (1, "COMPLETE")]
    reported = []  # everything the trials reported to Ray Tune (its result.json, one line per report)
    for row in summary["trials"]:
        run_dir = sweep_dir / f"trial-{row['trial']:04d}"
        assert row["run_dir"] == str(run_dir) and row["params"]["learning_rate"] in (1e-3, 3e-3)
        assert row["validation_ua"] == json.loads((run_dir / "eval_results.json").read_text())["eval_ua"]
        assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["learning_rate"] == row["params"]["learning_rate"]
        (ray_trial,) = [
            p
            for p in (sweep_dir / "ray").glob("*/params.json")
            if json.loads(p.read_text())["trial_number"] == row["trial"]
        ]
        lines = [json.loads(line) for line in (ray_trial.parent / "result.json").read_text().splitlines()]
        assert lines[-1]["validation_ua"] == row["validation_ua"] and lines[-1]["report"] == "final"
        reported += lines
    assert not [key for line in reported for key in line if key.startswith("test_")]
    assert not list(sweep_dir.glob("trial-*/test_results.json"))
    best = max(summary["trials"], key=lambda row: row["validation_ua"])
    assert summary["best"]["trial"] == best["trial"]
    assert (
        yaml.safe_load((sweep_dir / "best_recipe.yaml").read_text())["learning_rate"] == best["params"]["learning_rate"]
    )
    assert "| 1 | COMPLETE |" in (sweep_dir / "sweep_summary.md").read_text()

    # the same command again restores the finished experiment and trains nothing; another --trials is refused
    mtimes = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("trial-*/model.safetensors")}
    assert len(mtimes) == 2
    assert cli_main(command) == 0
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.glob("trial-*/model.safetensors")} == mtimes
    with pytest.raises(ValueError, match="Ray Tune restores an experiment as it was started"):
        sweep.run_sweep(argv, space, 3, backend="ray")
