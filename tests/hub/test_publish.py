import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import ModelCard
from run_folders import make_run_folder
from transformers import AutoModelForAudioClassification

from hf_ser.hub.publish import build_upload_folder, push_run
from hf_ser.hub.publish import main as push_main

TOKEN = "hf_recorderSECRETtoken0123456789"
MODEL_FILES = {
    "config.json",
    "model.safetensors",
    "modeling_wav2vec2_ser.py",
    "configuration_wav2vec2_ser.py",
    "preprocessor_config.json",
    "README.md",
    "app.py",  # the demo app (hf_ser/hub/templates) and what it needs without hf-ser
    "requirements.txt",
}


class RecordingApi:
    """Stands in for `huggingface_hub.HfApi`: records the calls and a copy of what would be uploaded."""

    instances: list = []

    def __init__(self, token=None, **_):
        self.token, self.calls, self.uploaded, self.repo_kinds, self.space_variables = token, [], {}, [], {}
        RecordingApi.instances.append(self)

    def create_repo(self, repo_id, private=None, exist_ok=False, repo_type=None, space_sdk=None, **_):
        from huggingface_hub import get_token

        self.effective_token = self.token or get_token()  # what HfApi would authenticate with
        self.calls.append(("create_repo", {"repo_id": repo_id, "private": private, "exist_ok": exist_ok}))
        self.repo_kinds.append((repo_type, space_sdk))
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"user/{repo_id}")

    def add_space_variable(self, repo_id, key, value, **_):
        self.calls.append(("add_space_variable", {"repo_id": repo_id}))
        self.space_variables[key] = value

    def upload_folder(self, repo_id, folder_path, commit_message=None, repo_type=None, **_):
        self.calls.append(("upload_folder", {"repo_id": repo_id, "commit_message": commit_message}))
        folder = Path(folder_path)
        self.uploaded = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        self.uploads = {**getattr(self, "uploads", {}), repo_type: self.uploaded}
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")


def _logits(model_dir) -> torch.Tensor:
    model = AutoModelForAudioClassification.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        return model(
            torch.linspace(-1, 1, 16000).sin()[None], attention_mask=torch.ones(1, 16000, dtype=torch.long)
        ).logits


def test_push_creates_the_repo_and_uploads_the_folder_without_the_token(tmp_path, caplog):
    run = make_run_folder(tmp_path / "run")
    api = RecordingApi()
    with caplog.at_level(logging.DEBUG):
        push_run(run, "me/emodb-ser", private=True, token=TOKEN, commit_message="first model", api=api)
    assert api.calls == [
        ("create_repo", {"repo_id": "me/emodb-ser", "private": True, "exist_ok": True}),
        ("upload_folder", {"repo_id": "me/emodb-ser", "commit_message": "first model"}),
    ]
    assert set(api.uploaded) == MODEL_FILES | {
        "eval_results.json",
        "test_results.json",
        "confusion_matrix.json",
        "data_report.json",
        "run_config.json",
    }
    assert not any(TOKEN.encode() in content for content in api.uploaded.values())
    assert TOKEN not in caplog.text
    assert b'model="me/emodb-ser"' in api.uploaded["README.md"]  # the card names the repository it is pushed to


def test_push_with_space_creates_a_gradio_space_of_the_demo_app_that_reads_the_model(tmp_path):
    from huggingface_hub import SpaceCard

    from hf_ser.hub.demo import APP_FILE, REQUIREMENTS_FILE
    from hf_ser.hub.publish import MODEL_VARIABLE

    run = make_run_folder(tmp_path / "run")
    api = RecordingApi()
    push_run(run, "emodb-ser", private=True, token=TOKEN, api=api, space_id="me/emodb-ser-demo")
    assert [name for name, _ in api.calls] == [
        "create_repo",
        "upload_folder",
        "create_repo",
        "add_space_variable",
        "upload_folder",
    ]
    assert api.repo_kinds == [("model", None), ("space", "gradio")]
    assert api.calls[2][1] == {"repo_id": "me/emodb-ser-demo", "private": True, "exist_ok": True}
    assert api.space_variables == {MODEL_VARIABLE: "user/emodb-ser"}  # the model id as the Hub resolved it
    assert f'os.environ.get("{MODEL_VARIABLE}")' in APP_FILE.read_text()  # ... which is what app.py reads
    space = api.uploads["space"]
    assert set(space) == {"app.py", "requirements.txt", "README.md"}
    assert space["app.py"] == APP_FILE.read_bytes() == api.uploads["model"]["app.py"]  # one app, in both repos
    assert space["requirements.txt"] == REQUIREMENTS_FILE.read_bytes()
    (tmp_path / "README.md").write_bytes(space["README.md"])
    card = SpaceCard.load(tmp_path / "README.md")
    assert (card.data.sdk, card.data.app_file, card.data.models) == ("gradio", "app.py", ["user/emodb-ser"])
    assert not any(TOKEN.encode() in content for content in space.values())


def test_cli_space_defaults_to_the_model_repository_id(tmp_path, monkeypatch):
    import huggingface_hub

    RecordingApi.instances.clear()
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    push_main([str(make_run_folder(tmp_path / "run")), "--repo-id", "me/emodb-ser", "--space"])
    (api,) = RecordingApi.instances
    assert api.calls[2] == ("create_repo", {"repo_id": "me/emodb-ser", "private": False, "exist_ok": True})
    assert api.repo_kinds == [("model", None), ("space", "gradio")]


def test_push_refuses_a_folder_that_contains_the_token(tmp_path):
    run = make_run_folder(tmp_path / "run")
    (run / "eval_results.json").write_text(json.dumps({"eval_ua": 0.5, "note": TOKEN}))
    api = RecordingApi()
    with pytest.raises(ValueError, match="eval_results.json contains the Hub token"):
        push_run(run, "me/emodb-ser", token=TOKEN, api=api)
    assert api.calls == []


def test_pickle_weights_are_refused(tmp_path):
    run = make_run_folder(tmp_path / "run")
    torch.save({"w": torch.zeros(1)}, run / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin.*safetensors only"):
        build_upload_folder(run, tmp_path / "upload")


def test_missing_model_code_is_refused(tmp_path):
    run = make_run_folder(tmp_path / "run")
    (run / "modeling_wav2vec2_ser.py").unlink()
    with pytest.raises(FileNotFoundError, match="modeling_wav2vec2_ser.py"):
        build_upload_folder(run, tmp_path / "upload")


def test_lora_run_publishes_the_adapter_and_the_model_it_adapts(tmp_path):
    from hf_ser.inference.loading import load_lora
    from hf_ser.training.lora import prepare_lora

    source = make_run_folder(tmp_path / "source")
    run = tmp_path / "lora_run"
    model = prepare_lora(AutoModelForAudioClassification.from_pretrained(str(source)), {"r": 4}, run)
    model.save_pretrained(run)
    for name in ("preprocessor_config.json", "data_report.json", "test_results.json"):
        shutil.copy(source / name, run / name)
    upload = build_upload_folder(run, tmp_path / "upload", repo_id="me/lora-ser")
    files = {str(p.relative_to(upload)) for p in upload.rglob("*") if p.is_file()}
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "preprocessor_config.json",
        "README.md",
        "base_model/config.json",
        "base_model/model.safetensors",
        "base_model/modeling_wav2vec2_ser.py",
    } <= files
    assert "app.py" not in files  # transformers alone cannot load the adapter; a Space of it is refused
    api = RecordingApi()
    with pytest.raises(ValueError, match="LoRA adapter.*hf-ser merge-lora"):
        push_run(run, "me/lora-ser", token=TOKEN, api=api, space_id="me/lora-ser")
    assert api.calls == []
    assert json.loads((upload / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    card = ModelCard.load(upload / "README.md")
    assert card.data.library_name == "peft" and "lora" in card.data.tags and "load_lora" in card.text
    batch = torch.linspace(-1, 1, 8000).sin()[None]
    with torch.no_grad():
        assert torch.allclose(load_lora(run)(batch).logits, load_lora(upload)(batch).logits)


def test_cli_dry_run_lists_the_upload_folder(tmp_path, capsys):
    run = make_run_folder(tmp_path / "run")
    push_main([str(run), "--repo-id", "me/emodb-ser", "--dry-run", str(tmp_path / "upload")])
    assert MODEL_FILES <= set(capsys.readouterr().out.split())


def _text_files(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): path.read_text(encoding="utf-8")
        for path in folder.rglob("*")
        if path.suffix in (".json", ".md")
    }


def test_upload_folder_carries_no_absolute_path_of_this_machine(tmp_path):
    run = make_run_folder(tmp_path / "runs" / "emodb")
    corpus = tmp_path / "data" / "My Corpus"  # a space in a folder name too
    run_config = json.loads((run / "run_config.json").read_text())
    run_config["data_args"].update(data_dir=str(corpus), manifest=None)
    run_config["model_args"]["model_name_or_path"] = str(tmp_path / "base" / "start")
    run_config["training_args"].update(output_dir=str(run), logging_dir=f"{run}/runs/Dec01")
    (run / "run_config.json").write_text(json.dumps(run_config, indent=2))
    report = json.loads((run / "data_report.json").read_text())
    report["skipped"] = [{"path": f"{corpus}/wav/03a01Xa.wav", "reason": "not a file name of the EmoDB scheme"}]
    report["notes"] = [
        {"path": "/tmp/elsewhere/clip.wav", "reason": "very short"},
        {"path": "https://example.org/data/clip.wav", "reason": "1/2 s, UA/WA"},  # URLs and slashes are not paths
    ]
    (run / "data_report.json").write_text(json.dumps(report))
    upload = build_upload_folder(run, tmp_path / "upload", repo_id="me/emodb-ser")
    texts = _text_files(upload)
    for text in texts.values():
        assert str(tmp_path) not in text and "/tmp/" not in text
    published = json.loads(texts["run_config.json"])
    assert published["data_args"]["data_dir"] == "My Corpus"
    assert (
        published["training_args"]["output_dir"] == "." and published["training_args"]["logging_dir"] == "./runs/Dec01"
    )
    assert published["model_args"]["model_name_or_path"] == "<local>/start"
    assert json.loads(texts["data_report.json"])["skipped"][0]["path"] == "My Corpus/wav/03a01Xa.wav"
    assert json.loads(texts["data_report.json"])["notes"] == [
        {"path": "<local>/clip.wav", "reason": "very short"},
        {"path": "https://example.org/data/clip.wav", "reason": "1/2 s, UA/WA"},
    ]
    assert json.loads(texts["test_results.json"]) == json.loads((run / "test_results.json").read_text())


@pytest.mark.slow
def test_upload_folder_of_a_trained_run_is_exact_and_loads_with_the_same_logits(tiny_run, tmp_path):
    assert (tiny_run / "training_args.bin").is_file() and any(tiny_run.glob("checkpoint-*"))
    upload = build_upload_folder(tiny_run, tmp_path / "upload", repo_id="me/tiny-ser")
    assert sorted(p.name for p in upload.iterdir()) == sorted(
        MODEL_FILES
        | {
            "eval_results.json",
            "test_results.json",
            "train_results.json",
            "all_results.json",
            "confusion_matrix.json",
            "confusion_matrix.png",
            "confusion_matrix_validation.png",
            "data_report.json",
            "run_config.json",
        }
    )
    for name in ("model.safetensors", "config.json", "test_results.json", "confusion_matrix.png"):
        assert (upload / name).read_bytes() == (tiny_run / name).read_bytes()
    assert (
        json.loads((upload / "config.json").read_text())["auto_map"]["AutoModelForAudioClassification"]
        == "modeling_wav2vec2_ser.Wav2Vec2SER"
    )
    assert torch.equal(_logits(upload), _logits(tiny_run))
    for name, text in _text_files(upload).items():  # a real run's files (the card included) carry no local path
        assert str(tiny_run.parent.parent) not in text and str(Path.cwd()) not in text, name  # pytest's tmp root


@pytest.mark.slow
def test_training_with_push_to_hub_pushes_after_evaluation_and_writes_no_token(
    tiny_train_argv, tmp_path, monkeypatch, caplog
):
    import huggingface_hub

    from hf_ser.train import main as train_main

    RecordingApi.instances.clear()
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.delenv("HF_TOKEN", raising=False)  # the run moves --hub_token there; restored afterwards
    with caplog.at_level(logging.INFO):
        train_main(
            tiny_train_argv
            + [
                "--num_train_epochs",
                "1",
                "--push_to_hub",
                "true",
                "--hub_model_id",
                "me/tiny-ser",
                "--hub_private_repo",
                "true",
                "--hub_token",
                TOKEN,
            ]
        )
    (api,) = RecordingApi.instances
    assert api.effective_token == TOKEN  # the token reaches HfApi (through HF_TOKEN) and no file
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"] and api.calls[0][1]["private"] is True
    assert {"test_results.json", "README.md", "model.safetensors"} <= set(api.uploaded)
    run = tmp_path / "run"
    assert not [p for p in run.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert TOKEN not in caplog.text
    assert ModelCard.load(run / "README.md").data.eval_results  # written into the run folder too


def test_push_without_a_token_is_one_line_saying_how_to_log_in(tmp_path, monkeypatch, capsys):
    from hf_ser.cli import main as cli_main

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no stored login either
    run = make_run_folder(tmp_path / "run")
    capsys.readouterr()  # what saving the run folder printed
    assert cli_main(["push", str(run), "--repo-id", "me/emodb-ser"]) == 2
    assert capsys.readouterr().err == (
        "hf-ser push: error: no Hugging Face token: run `hf auth login` (or set HF_TOKEN), then push again\n"
    )
