"""Specification of what `hf-ser` commands say when MODEL is neither a model folder nor a Hub model
(hf_ser/inference/loading.py): one line naming it, status 2, before transformers' `Repo id must be in the form ...`."""

import pytest

from hf_ser.cli import main as cli_main

MISSING = "outputs/no_such_run"  # shaped like a Hub id `user/name`: transformers would look on the Hub
NOT_A_HUB_ID = "./outputs/no_such_run"  # not shaped like one: transformers would answer `Repo id must be in the form`


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "{model}", "speech.wav"],
        ["evaluate", "{model}", "--output_dir", "{tmp}/out"],
        ["export-onnx", "{model}", "{tmp}/onnx"],
    ],
    ids=lambda argv: argv[0],
)
@pytest.mark.parametrize("model", [MISSING, NOT_A_HUB_ID])
def test_a_missing_model_folder_is_one_line_naming_it(argv, model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli_main([arg.format(model=model, tmp=tmp_path) for arg in argv]) == 2
    error = capsys.readouterr().err
    assert (
        error.startswith(f"hf-ser {argv[0]}: error: no model folder or Hub id {model!r}: ") and error.count("\n") == 1
    )
    assert "Repo id must be" not in error and not (tmp_path / "onnx").exists()


def test_merge_lora_and_push_name_the_missing_run_folder(tmp_path, capsys):
    assert cli_main(["merge-lora", str(tmp_path / "nothing"), str(tmp_path / "merged")]) == 2
    assert capsys.readouterr().err == f"hf-ser merge-lora: error: no LoRA run folder {str(tmp_path / 'nothing')!r}\n"
    assert cli_main(["push", str(tmp_path / "nothing"), "--repo-id", "me/x", "--dry-run", str(tmp_path / "up")]) == 2
    assert capsys.readouterr().err == f"hf-ser push: error: run folder {str(tmp_path / 'nothing')!r} does not exist\n"


def test_a_folder_that_holds_no_model_says_so(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert cli_main(["predict", str(tmp_path / "run"), "speech.wav"]) == 2
    assert capsys.readouterr().err.startswith(
        f"hf-ser predict: error: {tmp_path / 'run'} is not a model folder: it has no config.json or adapter_config.json"
    )
