import json
import math

import pytest
from conftest import TINY_WAV2VEC2

from hf_ser.arguments import parse_args
from hf_ser.cli import main as cli_main
from hf_ser.experiments import cross_validation
from hf_ser.experiments.compare import compare, load_result
from hf_ser.experiments.cross_validation import LOSESSO, LOSO, make_folds, run_cross_validation, speaker_session
from hf_ser.hub.model_card import save_model_card
from hf_ser.train import train

# EmoDB's ten speakers with their real item counts
EMODB_ITEMS = {"03": 49, "08": 58, "09": 43, "10": 38, "11": 55, "12": 35, "13": 61, "14": 69, "15": 56, "16": 71}
IEMOCAP_ITEMS = {f"Ses0{session}{gender}": 100 + 10 * session for session in range(1, 6) for gender in "FM"}


def _assert_speaker_independent(folds, speakers):
    for fold in folds:
        test, validation, train = set(fold.test_speakers), set(fold.validation_speakers), set(fold.train_speakers)
        assert not test & validation and not test & train and not validation & train
        assert test | validation | train == set(speakers)
        assert validation and train
    tested = [speaker for fold in folds for speaker in fold.test_speakers]
    assert sorted(tested) == sorted(speakers)  # every speaker is tested exactly once


@pytest.mark.parametrize("rule", [LOSO, "2", "3", "5", "10"])
def test_folds_never_put_a_test_speaker_in_train_or_validation(rule):
    _assert_speaker_independent(make_folds(EMODB_ITEMS, rule, seed=42), EMODB_ITEMS)


def test_leave_one_speaker_out_rotates_validation_over_every_speaker():
    folds = make_folds(EMODB_ITEMS, LOSO, seed=3)
    assert [fold.test_speakers for fold in folds] == [[speaker] for speaker in sorted(EMODB_ITEMS)]
    assert all(len(fold.validation_speakers) == 1 for fold in folds)  # round(0.15 x 9) = 1
    assert sorted(s for fold in folds for s in fold.validation_speakers) == sorted(EMODB_ITEMS)


def test_validation_share_follows_validation_fraction():
    folds = make_folds(EMODB_ITEMS, LOSO, validation_fraction=0.3)
    assert all(len(fold.validation_speakers) == 3 for fold in folds)  # round(0.3 x 9) = 3
    _assert_speaker_independent(folds, EMODB_ITEMS)


def test_k_folds_are_balanced_by_item_count_and_reproducible():
    folds = make_folds(EMODB_ITEMS, "3", seed=42)
    sizes = [sum(EMODB_ITEMS[s] for s in fold.test_speakers) for fold in folds]
    assert sum(sizes) == sum(EMODB_ITEMS.values())
    # greedy largest-first balancing: folds differ by at most the largest speaker's items, each near the mean
    assert max(sizes) - min(sizes) <= max(EMODB_ITEMS.values())
    assert all(abs(size - 535 / 3) <= 0.15 * 535 / 3 for size in sizes)
    assert make_folds(EMODB_ITEMS, "3", seed=42) == folds


def test_k_folds_with_equal_speakers_depend_on_the_seed():
    equal = {f"{i:02d}": 10 for i in range(12)}
    layouts = {tuple(tuple(f.test_speakers) for f in make_folds(equal, "4", seed=seed)) for seed in range(5)}
    assert len(layouts) > 1
    assert all(len(fold.test_speakers) == 3 for fold in make_folds(equal, "4"))


def test_session_of_iemocap_speakers():
    assert speaker_session("Ses01F") == "Ses01" and speaker_session("Ses05M") == "Ses05"
    assert speaker_session("03") is None and speaker_session("Ses01") is None


def test_leave_one_session_out_tests_both_speakers_of_a_session():
    folds = make_folds(IEMOCAP_ITEMS, LOSESSO)
    assert [fold.test_speakers for fold in folds] == [[f"Ses0{i}F", f"Ses0{i}M"] for i in range(1, 6)]
    _assert_speaker_independent(folds, IEMOCAP_ITEMS)
    # validation duty alternates between the actresses and the actors
    assert {s[-1] for fold in folds for s in fold.validation_speakers} == {"F", "M"}


def test_leave_one_session_out_needs_sessions():
    with pytest.raises(ValueError, match="speaker\\(s\\) \\['03', '08'.*have no session"):
        make_folds(EMODB_ITEMS, LOSESSO)


@pytest.mark.parametrize(
    "rule, message", [("7", "use 2 to 4 folds"), ("1", "use 2 to 4 folds"), ("by-gender", "use one of")]
)
def test_unknown_or_impossible_fold_rules_are_refused(rule, message):
    with pytest.raises(ValueError, match=message):
        make_folds({"a": 1, "b": 1, "c": 1, "d": 1}, rule)


def test_too_few_speakers_for_train_and_validation_is_refused():
    with pytest.raises(ValueError, match="needs at least two other speakers"):
        make_folds({"a": 5, "b": 5}, LOSO)


def _cv_argv(tiny_corpus, cv_dir, backbone_config):
    return [
        "--dataset",
        "audiofolder",
        "--data_dir",
        str(tiny_corpus),
        "--speaker_pattern",
        r"spk(?P<speaker>\d+)_",
        "--backbone_config",
        json.dumps(backbone_config),
        "--head_hidden_sizes",
        "16",
        "8",
        "--max_duration_seconds",
        "1.0",
        "--output_dir",
        str(cv_dir),
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--per_device_eval_batch_size",
        "8",
        "--learning_rate",
        "1e-3",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--seed",
        "7",
    ]


def test_split_options_on_the_command_line_are_refused(tiny_corpus, tmp_path, tiny_backbone_config):
    argv = _cv_argv(tiny_corpus, tmp_path / "cv", tiny_backbone_config) + ["--test_speakers", "01"]
    with pytest.raises(ValueError, match="test_speakers"):
        run_cross_validation(argv, "2")


def test_cross_validation_needs_speakers(tiny_corpus, tmp_path, tiny_backbone_config):
    argv = _cv_argv(tiny_corpus, tmp_path / "cv", tiny_backbone_config)
    argv[argv.index("--speaker_pattern") : argv.index("--speaker_pattern") + 2] = []
    with pytest.raises(ValueError, match="have no speaker"):
        run_cross_validation(argv, "2")


@pytest.fixture(scope="module")
def two_fold_cv(tiny_corpus, tmp_path_factory):
    """A 2-fold CV of the tiny corpus by the sequential command: its argv, folder, summary and corpus decodes."""
    cv_dir = tmp_path_factory.mktemp("two_fold_cv") / "cv"
    argv = _cv_argv(tiny_corpus, cv_dir, dict(TINY_WAV2VEC2))
    checks = []
    check_corpus = cross_validation.check_corpus
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cross_validation, "check_corpus", lambda args: checks.append(args) or check_corpus(args))
        assert cli_main(["cv", *argv, "--folds", "2"]) == 0
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    return {"argv": argv, "cv_dir": cv_dir, "summary": summary, "corpus_checks": len(checks)}


@pytest.mark.slow
def test_two_fold_cv_end_to_end_summarises_and_resumes(two_fold_cv, tmp_path, monkeypatch):
    argv, cv_dir, summary = two_fold_cv["argv"], two_fold_cv["cv_dir"], two_fold_cv["summary"]
    assert two_fold_cv["corpus_checks"] == 1  # the corpus is decoded once per CV run, not once per fold
    assert [row["fold"] for row in summary["folds"]] == ["fold-00", "fold-01"]
    assert sorted(s for row in summary["folds"] for s in row["test_speakers"]) == ["01", "02", "03", "04"]
    for row in summary["folds"]:
        fold_dir = cv_dir / row["fold"]
        data = json.loads((fold_dir / "data_report.json").read_text())
        assert data["splits"]["test"]["speakers"] == row["test_speakers"]
        assert data["splits"]["validation"]["speakers"] == row["validation_speakers"]
        assert not set(data["splits"]["train"]["speakers"]) & set(row["test_speakers"] + row["validation_speakers"])
        results = json.loads((fold_dir / "test_results.json").read_text())
        assert row["ua"] == results["test_ua"] and row["wa"] == results["test_wa"]
        assert row["epochs_run"] == 1 and row["max_epochs"] == 1 and row["wall_seconds"] > 0
    uas = [row["ua"] for row in summary["folds"]]
    assert summary["mean"]["ua"] == pytest.approx(sum(uas) / 2)
    assert summary["std"]["ua"] == pytest.approx(abs(uas[0] - uas[1]) / 2**0.5)  # sample std of two values
    # every one of the 48 clips is tested exactly once
    assert sum(map(sum, summary["confusion_matrix"])) == 48
    assert summary["labels"] == ["angry", "happy", "neutral", "sad"]
    assert summary["protocol"]["folds"] == "2" and "validation ua" in summary["protocol"]["model_selection"]
    markdown = (cv_dir / "cv_summary.md").read_text()
    assert f"{100 * summary['mean']['ua']:.2f} ± {100 * summary['std']['ua']:.2f}" in markdown
    assert "| fold-01 |" in markdown and "sample standard deviation" in markdown
    assert (cv_dir / "cv_confusion_matrix.png").stat().st_size > 1000

    # `hf-ser compare` reads the CV folder as one row with mean ± std
    row = compare([cv_dir], tmp_path / "comparison")[0]
    assert (row["ua"], row["ua_std"], row["evaluation"]) == (
        summary["mean"]["ua"],
        summary["std"]["ua"],
        "2-fold speaker-disjoint CV (2 folds)",
    )
    table = (tmp_path / "comparison" / "comparison.md").read_text()
    assert f"{100 * summary['mean']['wa']:.2f} ± {100 * summary['std']['wa']:.2f}" in table

    # a second invocation trains nothing and rewrites the same summary
    mtimes = {p: p.stat().st_mtime_ns for p in cv_dir.glob("fold-*/test_results.json")}
    calls = []
    monkeypatch.setattr(cross_validation, "train", lambda *args, **kwargs: calls.append(args[2].output_dir))
    again = run_cross_validation(argv, "2")
    assert calls == [] and again["folds"] == summary["folds"]
    assert mtimes == {p: p.stat().st_mtime_ns for p in cv_dir.glob("fold-*/test_results.json")}

    # a missing fold is trained again, and only that one
    (cv_dir / "fold-01" / "test_results.json").unlink()
    with pytest.raises(ValueError, match="fold-01/test_results.json"):  # the stub wrote no results to summarise
        run_cross_validation(argv, "2")
    assert calls == [str(cv_dir / "fold-01")]

    # other folds in the same folder are refused instead of mixed
    with pytest.raises(ValueError, match="other folds"):
        run_cross_validation(argv, LOSO)


@pytest.mark.slow
def test_refit_trains_each_fold_again_on_training_and_validation_speakers_for_the_chosen_epochs(
    tiny_corpus, tmp_path, monkeypatch, capsys
):
    cv_dir = tmp_path / "cv"
    argv = _cv_argv(tiny_corpus, cv_dir, dict(TINY_WAV2VEC2))
    argv[argv.index("--num_train_epochs") + 1] = "2"
    assert cli_main(["cv", *argv, "--folds", "2"]) == 0  # validation runs only
    plain = json.loads((cv_dir / "cv_summary.json").read_text())
    assert not list(cv_dir.glob("fold-*-refit"))

    # the same plan gains the refit: the finished validation runs are kept, only the refits train
    mtimes = {p: p.stat().st_mtime_ns for p in cv_dir.glob("fold-0?/test_results.json")}
    assert cli_main(["cv", *argv, "--folds", "2", "--refit"]) == 0
    assert mtimes == {p: p.stat().st_mtime_ns for p in cv_dir.glob("fold-0?/test_results.json")}
    assert json.loads((cv_dir / "cv_plan.json").read_text())["refit"] is True
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    for row, plain_row in zip(summary["folds"], plain["folds"]):
        refit_dir = cv_dir / f"{row['fold']}-refit"
        data = json.loads((refit_dir / "data_report.json").read_text())
        assert set(data["splits"]) == {"train", "test"}  # no validation split
        assert data["splits"]["train"]["speakers"] == sorted(
            json.loads((cv_dir / row["fold"] / "data_report.json").read_text())["splits"]["train"]["speakers"]
            + row["validation_speakers"]
        )
        assert data["splits"]["test"]["speakers"] == row["test_speakers"]
        state = json.loads((refit_dir / "trainer_state.json").read_text())
        assert state["num_train_epochs"] == math.ceil(plain_row["best_epoch"]) == row["epochs_run"]
        assert state["best_global_step"] is None and not [e for e in state["log_history"] if "eval_loss" in e]
        results = json.loads((refit_dir / "test_results.json").read_text())
        assert (row["ua"], row["wa"]) == (results["test_ua"], results["test_wa"])
        assert row["validation_run"]["ua"] == plain_row["ua"]  # the validation run's own test score, kept beside
        refit_wall = json.loads((refit_dir / "cv_fold.json").read_text())["wall_seconds"]
        assert row["wall_seconds"] == pytest.approx(plain_row["wall_seconds"] + refit_wall)  # both runs of the fold
        card = (refit_dir / "README.md").read_text()
        assert "There was no validation split" in card and "chosen on the validation speakers" not in card
    assert sum(map(sum, summary["confusion_matrix"])) == 48  # every clip tested once, by the refit models
    assert summary["validation_runs"]["mean"]["ua"] == plain["mean"]["ua"]
    assert "training + validation speakers" in summary["protocol"]["model_selection"]
    assert summary["command"][-1] == "--refit"
    markdown = (cv_dir / "cv_summary.md").read_text()
    assert "refit models" in markdown and "Their validation runs" in markdown and "| fold-01 |" in markdown
    assert compare([cv_dir], tmp_path / "comparison")[0]["ua"] == summary["mean"]["ua"]
    assert load_result(cv_dir)["predictions"] == [  # paired tests read the refit models' predictions
        str(cv_dir / f"fold-0{i}-refit" / "test_predictions.json") for i in (0, 1)
    ]
    # `hf-ser evaluate` rebuilds a refit run's split from its run_config.json (no validation speakers) and scores alike
    assert cli_main(["evaluate", str(cv_dir / "fold-00-refit"), "--output_dir", str(tmp_path / "evaluated")]) == 0
    evaluated = json.loads((tmp_path / "evaluated" / "test_results.json").read_text())
    assert evaluated["test_ua"] == summary["folds"][0]["ua"]
    split_argv = ["--split", "validation", "--output_dir", str(tmp_path / "evaluated-validation")]
    assert cli_main(["evaluate", str(cv_dir / "fold-00-refit"), *split_argv]) != 0
    assert "no validation split" in capsys.readouterr().err
    save_model_card(cv_dir / "fold-00-refit")  # the card written again (as `hf-ser push` does) states the CV's refit
    assert (
        "Model per fold: each fold's validation run chose an epoch count"
        in (cv_dir / "fold-00-refit" / "README.md").read_text()
    )
    save_model_card(cv_dir / "fold-00")  # a validation run is not one of the models the refit summary scores
    assert "Model per fold" not in (cv_dir / "fold-00" / "README.md").read_text()

    # a refit made for another epoch count (its validation run trained again since) is refused, not reused
    timing_file = cv_dir / "fold-00-refit" / "cv_fold.json"
    timing = json.loads(timing_file.read_text())
    assert timing["epochs"] == summary["folds"][0]["epochs_run"]
    timing_file.write_text(json.dumps({**timing, "epochs": timing["epochs"] + 5}))
    with pytest.raises(ValueError, match="delete .*fold-00-refit to refit that fold again"):
        run_cross_validation(argv, "2")
    timing_file.write_text(json.dumps(timing))

    # rerun: nothing trains; the refit is the plan's now, so fold jobs follow it without the flag
    calls = []
    monkeypatch.setattr(cross_validation, "train", lambda *args, **kwargs: calls.append(args[2].output_dir))
    assert cli_main(["cv", *argv, "--fold", "1"]) == 0 and calls == []
    (cv_dir / "fold-01-refit" / "test_results.json").unlink()
    cli_main(["cv", *argv, "--fold", "1"])
    assert calls == [str(cv_dir / "fold-01-refit")]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cross_validation.main([*argv, "--fold", "1", "--refit"])
    assert "--refit belongs to the plan" in capsys.readouterr().err


def test_refit_length_is_the_best_checkpoints_epoch_rounded_up_from_the_trainer_state_alone(tmp_path):
    fold_dir = tmp_path / "fold-00"
    fold_dir.mkdir()
    history = [{"loss": 1.0, "epoch": 1.0, "step": 4}, {"eval_ua": 0.5, "epoch": 1.3, "step": 5}]
    state = {"best_global_step": 5, "log_history": history}
    (fold_dir / "trainer_state.json").write_text(json.dumps(state))
    assert cross_validation.refit_epochs(fold_dir) == 2  # no test_results.json needed (rank 0 writes it later)
    (fold_dir / "trainer_state.json").write_text(json.dumps({**state, "best_global_step": None}))
    with pytest.raises(ValueError, match="no best checkpoint"):
        cross_validation.refit_epochs(fold_dir)


def test_a_refit_plan_whose_validation_runs_choose_no_checkpoint_is_refused(
    tiny_corpus, tmp_path, tiny_backbone_config
):
    argv = _cv_argv(tiny_corpus, tmp_path / "cv", tiny_backbone_config) + ["--load_best_model_at_end", "false"]
    with pytest.raises(ValueError, match="--refit takes each fold's epoch count"):
        run_cross_validation(argv, "2", refit=True)
    assert not (tmp_path / "cv" / "fold-00").exists()


def test_an_empty_validation_list_in_a_recipe_is_kept_and_the_command_line_overrides_it(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("dataset: emodb\nvalidation_speakers: []\ntest_speakers: ['03']\n")
    assert parse_args([str(recipe)])[1].validation_speakers == []
    assert parse_args([str(recipe), "--validation_speakers", "09"])[1].validation_speakers == ["09"]


def test_a_run_without_validation_speakers_refuses_checkpoint_selection(tiny_corpus, tmp_path, tiny_backbone_config):
    argv = _cv_argv(tiny_corpus, tmp_path / "run", tiny_backbone_config)
    argv += ["--train_speakers", "01", "02", "--validation_speakers", "none", "--test_speakers", "03", "04"]
    model_args, data_args, training_args = parse_args(argv)
    data_args.validation_speakers = []  # what `hf-ser cv --refit` trains
    with pytest.raises(ValueError, match="no validation split.*eval_strategy: epoch.*load_best_model_at_end"):
        train(model_args, data_args, training_args)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_resuming_with_other_options_is_refused(tmp_path):
    plan = {
        "folds_rule": LOSO,
        "seed": 42,
        "argv": ["recipe.yaml"],
        "folds": [vars(fold) for fold in make_folds(EMODB_ITEMS)],
    }
    cross_validation._check_plan(tmp_path, plan)
    cross_validation._check_plan(tmp_path, plan)  # the same plan resumes
    with pytest.raises(ValueError, match="other options"):
        cross_validation._check_plan(tmp_path, {**plan, "argv": ["recipe.yaml", "--learning_rate", "0.1"]})


def _comparable(summary):
    """A CV summary without what differs between two runs of the same folds: timings and the command's folder."""
    summary = {key: value for key, value in summary.items() if not key.startswith(("wall_seconds", "command"))}
    summary["folds"] = [{k: v for k, v in row.items() if k != "wall_seconds"} for row in summary["folds"]]
    return summary


@pytest.mark.slow
def test_folds_as_jobs_give_the_sequential_summary(two_fold_cv, tiny_corpus, tmp_path, capsys):
    jobs_dir = tmp_path / "jobs"
    argv = _cv_argv(tiny_corpus, jobs_dir, dict(TINY_WAV2VEC2))  # the sequential run's options, another folder
    assert cli_main(["cv", *argv, "--folds", "2", "--plan_only"]) == 0
    plan = json.loads((jobs_dir / "cv_plan.json").read_text())
    assert len(plan["folds"]) == 2 and not list(jobs_dir.glob("fold-*"))

    assert cli_main(["cv", *argv, "--fold", "1"]) == 0  # without --folds: the plan's rule
    assert cli_main(["cv", *argv, "--summarize"]) == 0
    partial = json.loads((jobs_dir / "cv_summary.json").read_text())
    assert [row["fold"] for row in partial["folds"]] == ["fold-01"] and partial["missing_folds"] == ["fold-00"]
    assert "Incomplete: 1 of 2 folds finished; missing fold-00" in (jobs_dir / "cv_summary.md").read_text()
    assert "missing: fold-00" in capsys.readouterr().out
    assert load_result(jobs_dir)["evaluation"].endswith("CV, incomplete: 1 of 2 folds (missing fold-00)")

    assert cli_main(["cv", *argv, "--fold", "0"]) == 0
    assert cli_main(["cv", *argv, "--fold", "0"]) == 0  # a rerun job finds the fold done
    assert "fold 0: finished already" in capsys.readouterr().out
    assert cli_main(["cv", *argv, "--summarize"]) == 0
    jobs = json.loads((jobs_dir / "cv_summary.json").read_text())
    assert "missing_folds" not in jobs and len(jobs["folds"]) == 2
    assert _comparable(jobs) == _comparable(two_fold_cv["summary"])


def test_fold_jobs_refuse_a_missing_plan_an_edited_recipe_or_corpus(
    tiny_corpus, tmp_path, tiny_backbone_config, capsys
):
    import shutil

    corpus = shutil.copytree(tiny_corpus, tmp_path / "corpus")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("seed: 7\n")
    argv = [str(recipe), *_cv_argv(corpus, tmp_path / "cv", tiny_backbone_config)]
    assert cli_main(["cv", *argv, "--fold", "0"]) == 2
    assert "cv_plan.json does not exist: plan the folds first" in capsys.readouterr().err
    assert cli_main(["cv", *argv, "--folds", "2", "--plan_only"]) == 0
    assert cli_main(["cv", *argv, "--fold", "2"]) == 2
    assert "--fold 2: " in (err := capsys.readouterr().err) and "has 2 folds, 0 to 1" in err

    recipe.write_text("seed: 7\nweight_decay: 0.1\n")
    assert cli_main(["cv", *argv, "--fold", "0"]) == 2
    assert "planned with a different recipe" in capsys.readouterr().err
    recipe.write_text("seed: 7\n")
    next(corpus.rglob("spk01_*.wav")).unlink()
    assert cli_main(["cv", *argv, "--summarize"]) == 2
    assert "planned with a different corpus" in capsys.readouterr().err
