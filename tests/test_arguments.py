import pytest
from conftest import REPO_ROOT, TINY_SPEAKER_PATTERN

from hf_ser.arguments import load_recipe, parse_args

RECIPES = sorted((REPO_ROOT / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    names = {p.stem for p in RECIPES}
    assert {"demo", "emodb", "wav2vec2", "wav2vec2-base", "wav2vec2-large-960h-lv60-self", "large"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_parses(recipe):
    model_args, data_args, training_args = parse_args([str(recipe)])
    assert training_args.remove_unused_columns is False
    assert training_args.metric_for_best_model == "ua"
    assert data_args.dataset


def test_seed_columns_keep_the_seed_hyperparameters():
    expected = {
        "wav2vec2": (5e-5, 16, 100, 0.01, 0.3, {"TimeStretch", "PitchShift", "AddGaussianNoise", "TimeMask"}),
        "wav2vec2-base": (1e-4, 32, 30, 0.01, 0.3, {"AddGaussianNoise"}),
        "wav2vec2-large-960h-lv60-self": (2e-4, 16, 30, 5e-5, 0.3, {"AddGaussianNoise"}),
        "large": (1e-4, 16, 200, 1e-4, 0.6, {"AddGaussianNoise"}),
    }
    for name, (lr, batch, epochs, decay, dropout, augmentations) in expected.items():
        model_args, data_args, training_args = parse_args([str(REPO_ROOT / "recipes" / f"{name}.yaml")])
        assert (training_args.learning_rate, training_args.per_device_train_batch_size) == (lr, batch)
        assert (training_args.num_train_epochs, training_args.weight_decay) == (epochs, decay)
        assert model_args.head_dropout == dropout and model_args.head_hidden_sizes == [512, 256]
        assert {a["name"] for a in data_args.augmentations} == augmentations
        assert data_args.max_duration_seconds == 6.0 and training_args.optim == "adamw_torch"


def test_command_line_overrides_beat_the_recipe():
    recipe = str(REPO_ROOT / "recipes" / "demo.yaml")
    model_args, data_args, training_args = parse_args(
        [
            recipe,
            "--learning_rate",
            "3e-4",
            "--head_hidden_sizes",
            "64",
            "--dataset",
            "emodb",
            "--augmentations",
            '[{"name": "TimeMask", "p": 1.0}]',
            "--freeze_feature_encoder",
            "true",
        ]
    )
    assert training_args.learning_rate == 3e-4
    assert model_args.head_hidden_sizes == [64]
    assert data_args.dataset == "emodb"
    assert data_args.augmentations == [{"name": "TimeMask", "p": 1.0}]
    assert model_args.freeze_feature_encoder is True
    assert model_args.backbone_config["hidden_size"] == 64  # untouched recipe values survive


def test_scientific_notation_without_a_dot_is_a_float(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rate: 2e-5\nweight_decay: 1e-4\n")
    _, _, training_args = parse_args([str(recipe)])
    assert training_args.learning_rate == 2e-5 and training_args.weight_decay == 1e-4


def test_unknown_recipe_key_is_named(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("learning_rat: 1.0e-4\n")
    with pytest.raises(
        ValueError, match=r"bad.yaml: unknown recipe key 'learning_rat' \(did you mean 'learning_rate'\?\)"
    ):
        load_recipe(recipe)


def test_unknown_command_line_key_is_an_error():
    with pytest.raises(ValueError, match=r"unknown command-line option\(s\) --no_such_key;"):
        parse_args([str(REPO_ROOT / "recipes" / "demo.yaml"), "--no_such_key", "1"])


def test_missing_recipe_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        parse_args([str(tmp_path / "nope.yaml")])


def test_test_metric_cannot_select_models():
    with pytest.raises(ValueError, match="test split never selects"):
        parse_args(["--metric_for_best_model", "test_ua"])


def test_label_targets_are_hard_by_default_and_only_hard_or_soft(tmp_path):
    assert parse_args(["--output_dir", str(tmp_path)])[1].label_targets == "hard"
    assert parse_args(["--label_targets", "soft", "--output_dir", str(tmp_path)])[1].label_targets == "soft"
    with pytest.raises(ValueError, match=r"label_targets='votes': use `hard` \(the default\) or `soft`"):
        parse_args(["--label_targets", "votes", "--output_dir", str(tmp_path)])


def test_resumed_runs_restore_early_stopping_state_by_default():
    _, _, training_args = parse_args([str(REPO_ROOT / "recipes" / "demo.yaml")])
    assert training_args.restore_callback_states_from_checkpoint is True


@pytest.mark.parametrize(
    "options, message",
    [
        (["--model_type", "ser-cnn", "--encoder_learning_rate", "1e-5"], "ser-cnn has no pretrained encoder"),
        (["--model_type", "ser-cnn", "--freeze_encoder_steps", "10"], r"\['freeze_encoder_steps'\] do not apply"),
        (["--model_type", "ser-cnn", "--backbone", "facebook/wav2vec2-base"], r"\['backbone'\] do not apply"),
        (["--peft", '{"r": 8}', "--freeze_encoder_steps", "10"], "freeze_encoder_steps does not combine with `peft`"),
        (["--backbone", "facebook/wav2vec2-base", "--backbone_config", '{"model_type": "wav2vec2"}'], "not both"),
        (["--per_device_train_batch_size", "1"], "per_device_train_batch_size=1 with a BatchNorm model"),
        (
            ["--early_stopping_patience", "3", "--eval_strategy", "no", "--load_best_model_at_end", "false"],
            "early_stopping_patience=3 counts evaluations, and eval_strategy is `no`",
        ),
    ],
)
def test_impossible_combinations_are_refused_when_parsing(options, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        parse_args([*options, "--output_dir", str(tmp_path)])


def test_batch_one_is_accepted_without_batch_norm(tmp_path):
    parse_args(["--per_device_train_batch_size", "1", "--head_batch_norm", "false", "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("command", sorted(__import__("hf_ser.cli", fromlist=["COMMANDS"]).COMMANDS))
def test_every_command_prints_its_usage_with_help(command, capsys):
    from hf_ser.cli import main as cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: hf-ser")


def test_user_errors_are_one_line_with_status_2_and_debug_shows_the_traceback(capsys, tmp_path):
    from hf_ser.cli import main as cli_main

    assert cli_main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err == f"hf-ser train: error: recipe {str(tmp_path / 'missing.yaml')!r} does not exist\n"
    with pytest.raises(FileNotFoundError):
        cli_main(["--debug", "train", str(tmp_path / "missing.yaml")])


def test_a_command_line_typo_is_refused_with_the_key_it_resembles(tmp_path):
    # argparse would accept the unambiguous prefix --learning_rat as --learning_rate without a word
    with pytest.raises(ValueError, match=r"--learning_rat \(did you mean '--learning_rate'\?\)"):
        parse_args(["--learning_rat", "1e-3", "--output_dir", str(tmp_path)])


def test_version_is_the_installed_distributions(capsys):
    from importlib.metadata import version

    from hf_ser.cli import main as cli_main

    assert cli_main(["--version"]) == 0
    assert capsys.readouterr().out == f"hf-ser {version('hf-ser')}\n"


# ---------------------------------------------------------------- a newcomer's first commands (issue 14, Why 6 and 7)
BASE = REPO_ROOT / "recipes" / "base.yaml"


def test_none_clears_a_recipes_speaker_lists_for_an_automatic_split(tiny_corpus):
    from hf_ser.data.dataset import build_corpus

    _, data_args, _ = parse_args(
        [
            str(BASE),
            "--dataset",
            "audiofolder",
            "--data_dir",
            str(tiny_corpus),
            "--speaker_pattern",
            TINY_SPEAKER_PATTERN,
        ]
        + ["--validation_speakers", "none", "--test_speakers", "none", "--output_dir", "unused"]
    )
    assert (data_args.validation_speakers, data_args.test_speakers) == (None, None)
    assert data_args.value_sources["test_speakers"] == "the command line"
    assert data_args.value_sources["max_duration_seconds"] == str(BASE)
    splits, _, report = build_corpus(data_args)
    speakers = [set(report.splits[name]["speakers"]) for name in ("train", "validation", "test")]
    assert set.union(*speakers) == {"01", "02", "03", "04"} and sum(map(len, speakers)) == 4  # drawn, disjoint


def test_none_in_a_recipe_clears_a_list_key_too(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("labels: none\ntrain_speakers: [a, b]\n")
    _, data_args, _ = parse_args([str(recipe), "--train_speakers", "none"])
    assert (data_args.labels, data_args.train_speakers) == (None, None)


def test_speakers_a_recipe_set_that_the_corpus_lacks_are_one_line_naming_the_recipe_and_the_fix(
    tiny_corpus, monkeypatch, capsys
):
    from hf_ser.cli import main as cli_main

    monkeypatch.chdir(REPO_ROOT)
    argv = ["recipes/base.yaml", "--dataset", "audiofolder", "--data_dir", str(tiny_corpus)]
    assert cli_main(["train", *argv, "--speaker_pattern", TINY_SPEAKER_PATTERN]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (  # the last line: the decoding pass may show progress
        "hf-ser train: error: validation_speakers ['09', '10'] (from recipes/base.yaml) are not speakers of this "
        "corpus (its speakers: ['01', '02', '03', '04']); give speakers of it, or clear them with "
        "--validation_speakers none"
    )
    # without speaker_pattern the corpus has no speakers: the recipe's lists were ignored, now they are named
    assert cli_main(["train", *argv, "--validation_speakers", "none"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "hf-ser train: error: test_speakers ['03', '08'] (from recipes/base.yaml): dataset 'audiofolder' has no "
        "speakers to split by (an audiofolder takes them from speaker_pattern); clear them with --test_speakers none"
    )


def test_train_help_leads_with_the_recipe_and_hf_sers_own_key_groups(capsys):
    from hf_ser.cli import main as cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: hf-ser train RECIPE [--key value ...]\n")
    headings = ["data (DataArguments)", "model (ModelArguments)", "training: hf-ser's own", "Trainer options"]
    positions = [text.index(f"\n{heading}") for heading in headings]
    assert positions == sorted(positions)

    def option(name):
        return text.index(f"\n  --{name} ")

    assert positions[0] < option("validation_speakers") < positions[1] < option("backbone") < positions[2]
    assert positions[2] < option("early_stopping_patience") < positions[3] < option("learning_rate")


def test_train_without_a_recipe_is_one_line_with_status_2(capsys):
    from hf_ser.cli import main as cli_main

    assert cli_main(["train"]) == 2
    assert capsys.readouterr().err == (
        "hf-ser train: error: no recipe: hf-ser train RECIPE [--key value ...] (recipes/ has examples; --help lists "
        "every key)\n"
    )


def test_task_is_categorical_by_default_and_dimensional_selects_on_validation_mean_ccc():
    model_args, data_args, training_args = parse_args(["--dataset", "iemocap", "--data_dir", "x"])
    assert (data_args.task, training_args.metric_for_best_model) == ("categorical", "ua")
    model_args, data_args, training_args = parse_args(
        ["--dataset", "iemocap", "--data_dir", "x", "--task", "dimensional"]
    )
    assert data_args.dimensions == ["arousal", "valence", "dominance"] and model_args.dimensional_loss == "ccc"
    assert (training_args.metric_for_best_model, training_args.greater_is_better) == ("ccc", True)
    _, _, chosen = parse_args(["--task", "dimensional", "--metric_for_best_model", "ccc_valence"])
    assert chosen.metric_for_best_model == "ccc_valence"


def test_batch_shape_keys_default_to_buckets_and_random_batches(tmp_path):
    _, data_args, training_args = parse_args(["--output_dir", str(tmp_path)])
    assert data_args.pad_to_multiple_of_seconds == 0.5 and data_args.pad_to_multiple_of_samples == 8000
    # random batches: length grouping changes which clips train together, and needs a `duration` column
    assert (training_args.train_sampling_strategy, training_args.length_grouping) == ("random", "epoch")
    _, data_args, training_args = parse_args(
        ["--output_dir", str(tmp_path), "--pad_to_multiple_of_seconds", "0", "--length_grouping", "megabatch"]
    )
    assert data_args.pad_to_multiple_of_samples is None and training_args.length_grouping == "megabatch"


@pytest.mark.parametrize(
    "options, message",
    [
        (["--metric_for_best_model", "ua"], r"metric_for_best_model='ua' \(from the command line\) is a categorical"),
        (["--class_weights", "balanced"], "class_weights weigh classes"),
        (["--per_device_train_batch_size", "1", "--head_batch_norm", "false"], "ccc is computed over each batch"),
        (["--dimensional_loss", "mae"], r"dimensional_loss='mae': use one of \('ccc', 'mse'\)"),
        (["--dimensions", "arousal", "arousal"], "name each target dimension once"),
        (["--use_corpus_split", "true", "--test_speakers", "1"], r"use_corpus_split takes .* drop \['test_speakers'\]"),
    ],
)
def test_dimensional_combinations_that_cannot_work_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        parse_args(["--task", "dimensional", *options])


@pytest.mark.parametrize("command", ["cv", "seeds", "sweep"])
def test_commands_that_score_classes_refuse_a_dimensional_recipe_in_one_line(command, capsys, tmp_path):
    from hf_ser.cli import main as cli_main

    argv = [command, "--task", "dimensional", "--dataset", "iemocap", "--output_dir", str(tmp_path / "out")]
    argv += ["--space", str(tmp_path / "space.yaml"), "--trials", "1"] if command == "sweep" else []
    argv += ["--seeds", "1", "2"] if command == "seeds" else []
    if command == "sweep":
        (tmp_path / "space.yaml").write_text("learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3}\n")
    assert cli_main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert (
        len(error) == 1
        and f"hf-ser {command} scores emotion classes; it does not support task: dimensional" in error[0]
    )


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["--pad_to_multiple_of_seconds", "-0.5"],
            "hf-ser train: error: pad_to_multiple_of_seconds=-0.5: use a positive",
        ),
        (["--length_grouping", "sorted"], "hf-ser train: error: length_grouping='sorted': use `epoch` or `megabatch`"),
        (
            ["--train_sampling_strategy", "bucketed"],
            "--train_sampling_strategy/--train-sampling-strategy: invalid choice: 'bucketed'",
        ),
    ],
)
def test_bad_batch_shape_keys_are_one_line_naming_the_key(options, message, capsys, tmp_path):
    from hf_ser.cli import main as cli_main

    assert cli_main(["train", *options, "--output_dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error
