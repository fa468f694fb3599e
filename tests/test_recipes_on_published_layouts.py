"""Every seed recipe trains 2 steps and evaluates, with its `backbone` pointed at the nearest published layout.

The recipe is used as written except for the data (the tiny corpus, its speakers), the length of the run, and the
backbone: the recipes name Hub checkpoints, and the nearest published-layout fixture (tests/published_layouts.py)
stands in for each, in the class layout the Hub checkpoint has.
"""

import json

import pytest
from conftest import REPO_ROOT, TINY_DATA_ARGV
from published_layouts import CHECKPOINTS_DIR, LAYOUTS, build_layout

from hf_ser.arguments import load_recipe
from hf_ser.train import main as train_main

RECIPES = sorted(path.name for path in (REPO_ROOT / "recipes").glob("*.yaml"))
# The nearest published layout of each recipe's backbone (none: the recipe builds its model from a config).
NEAREST_LAYOUT = {
    "facebook/wav2vec2-base": "wav2vec2-base-960h",
    "facebook/wav2vec2-base-960h": "wav2vec2-base-960h",
    "facebook/wav2vec2-large": "wav2vec2-large-robust-msp-dim",
    "facebook/wav2vec2-large-960h-lv60-self": "wav2vec2-large-robust-msp-dim",
    "openai/whisper-small": "whisper-small",
}
SHORT_RUN = [
    "--max_steps",
    "2",
    "--eval_strategy",
    "steps",
    "--eval_steps",
    "2",
    "--save_strategy",
    "steps",
    "--save_steps",
    "2",
    "--per_device_train_batch_size",
    "4",
    "--per_device_eval_batch_size",
    "4",
    "--max_duration_seconds",
    "1.0",
    "--report_to",
    "none",
    "--disable_tqdm",
    "true",
]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root, built = tmp_path_factory.mktemp("recipe_layouts"), {}

    def folder(name):
        if name not in built:
            built[name] = build_layout(next(layout for layout in LAYOUTS if layout.name == name), root / name)
        return built[name]

    return folder


def test_every_recipe_with_a_backbone_has_a_published_stand_in():
    backbones = {load_recipe(REPO_ROOT / "recipes" / name).get("backbone") for name in RECIPES} - {None}
    assert backbones <= set(NEAREST_LAYOUT), backbones - set(NEAREST_LAYOUT)
    assert "whisper-small.yaml" in RECIPES


@pytest.mark.slow
@pytest.mark.skipif(not CHECKPOINTS_DIR.is_dir(), reason=f"published configs not found at {CHECKPOINTS_DIR}")
@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_and_evaluates_on_its_published_layout(recipe, layouts, tiny_corpus, tmp_path):
    backbone = load_recipe(REPO_ROOT / "recipes" / recipe).get("backbone")
    argv = [
        str(REPO_ROOT / "recipes" / recipe),
        *TINY_DATA_ARGV,
        "--data_dir",
        str(tiny_corpus),
        *SHORT_RUN,
        "--output_dir",
        str(tmp_path / "run"),
    ]
    if backbone:
        argv += ["--backbone", str(layouts(NEAREST_LAYOUT[backbone]))]
    train_main(argv)
    results = json.loads((tmp_path / "run" / "test_results.json").read_text())
    assert results["test_samples"] == 12 and 0.0 <= results["test_ua"] <= 1.0
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert any("eval_ua" in entry for entry in state["log_history"])


@pytest.mark.slow
@pytest.mark.skipif(not CHECKPOINTS_DIR.is_dir(), reason=f"published configs not found at {CHECKPOINTS_DIR}")
def test_hf_ser_predict_reproduces_the_per_clip_predictions_behind_test_results(layouts, tiny_corpus, tmp_path):
    """A group-norm backbone (wav2vec2-base-960h layout): evaluation batched the test clips 4 at a time in corpus
    order, `hf-ser predict` batches 8 at a time by duration; each clip must get the same class."""
    from hf_ser.cli import main as cli_main

    run = tmp_path / "run"
    train_main(
        [
            str(REPO_ROOT / "recipes" / "wav2vec2.yaml"),
            *TINY_DATA_ARGV,
            "--data_dir",
            str(tiny_corpus),
            *SHORT_RUN,
            "--output_dir",
            str(run),
            "--backbone",
            str(layouts("wav2vec2-base-960h")),
        ]
    )
    behind_results = {row["path"]: row["predicted"] for row in json.loads((run / "test_predictions.json").read_text())}
    assert len(behind_results) == json.loads((run / "test_results.json").read_text())["test_samples"] == 12
    assert (
        cli_main(
            [
                "predict",
                str(run),
                *behind_results,
                "--format",
                "json",
                "--output",
                str(tmp_path / "p.json"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    predicted = {row["file"]: row["label"] for row in json.loads((tmp_path / "p.json").read_text())["predictions"]}
    assert predicted == behind_results
