"""Publish a run folder to the Hugging Face Hub: an explicit upload folder, then `HfApi.create_repo` + `upload_folder`.

    hf-ser push RUN_DIR --repo-id NAME_OR_ORG/NAME [--private] [--space [SPACE_ID]]

What goes up: safetensors weights, `config.json` (with its `auto_map`) and the model code files it names, the feature
extractor, the model card `README.md`, the metrics JSON files, the data report and run config, the confusion-matrix
PNGs, and the demo app (`app.py` + `requirements.txt`, hf_ser/hub/templates; not for LoRA adapters). With `--space`, a
Gradio Space is created from the same app, reading the model from the model repository. What never goes up:
checkpoints, `training_args.bin`, any pickle-based weights (`.bin`, `.pt`, ...: refused), or an absolute path of the
publisher's machine: in the text files, paths inside the run folder become relative to it (`output_dir: .`), paths
inside the corpus folder relative to the corpus's name (`emodb/wav/03a01Fa.wav`), and any other absolute local path
`<local>/NAME`.
The token comes from `huggingface_hub`'s login or `HF_TOKEN`; it is passed to `HfApi` only, never written or logged,
and the upload folder is searched for it before anything is sent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

from hf_ser.hub.demo import APP_FILE, REQUIREMENTS_FILE, SPACE_GRADIO_VERSION
from hf_ser.hub.model_card import confusion_images, read_run, save_model_card
from hf_ser.run_folder import (
    BASE_MODEL_DIR,
    CONFUSION_MATRIX_FILE,
    CV_SUMMARY_FILE,
    DATA_REPORT_FILE,
    RUN_CONFIG_FILE,
    is_pickled_weights,
    read_json,
    results_file,
)

logger = logging.getLogger(__name__)

FULL_MODEL_FILES = ("config.json", "preprocessor_config.json")
ADAPTER_FILES = ("adapter_config.json",)
RESULT_FILES = (
    *(results_file(prefix) for prefix in ("eval", "test", "train", "all")),
    CONFUSION_MATRIX_FILE,
    DATA_REPORT_FILE,
    RUN_CONFIG_FILE,
)
DEFAULT_COMMIT_MESSAGE = "Upload hf-ser speech emotion recognition model"
MODEL_VARIABLE = "HF_SER_MODEL"  # the Space variable app.py reads the model repository id from


def _weight_files(run_dir: Path, adapter: bool) -> list[Path]:
    stem = "adapter_model" if adapter else "model"
    index = run_dir / f"{stem}.safetensors.index.json"
    if index.is_file():  # sharded: the index and every shard it names
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [name for name in shards if not (run_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{index} names shard(s) {missing} that are not in {run_dir}")
        return [index, *(run_dir / name for name in shards)]
    single = run_dir / f"{stem}.safetensors"
    if not single.is_file():
        raise FileNotFoundError(f"{single} is missing: hf-ser publishes safetensors weights only")
    return [single]


def _code_files(run_dir: Path, config: dict) -> list[Path]:
    """The modules `auto_map` points at (`modeling_wav2vec2_ser.Wav2Vec2SER` -> `modeling_wav2vec2_ser.py`)."""
    modules = {reference.split("--")[-1].split(".")[0] for reference in (config.get("auto_map") or {}).values()}
    files = [run_dir / f"{module}.py" for module in sorted(modules)]
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{run_dir}/config.json's auto_map needs {missing}, which are not in the folder: the "
            "model would not load with trust_remote_code=True"
        )
    return files


def refuse_pickle_weights(folder: Path) -> None:
    # weights in pickle formats are refused, not converted behind the user's back
    pickled = sorted(path.name for path in folder.iterdir() if path.is_file() and is_pickled_weights(path))
    if pickled:
        raise ValueError(
            f"{folder} holds pickle-based file(s) {pickled}: hf-ser publishes safetensors only. Re-save "
            "the model with save_pretrained(safe_serialization=True) and remove them."
        )


def _model_files(folder: Path, adapter: bool, extractor: bool = True) -> list[Path]:
    """Weights, config, code and feature extractor of a full model folder, or of an adapter folder."""
    refuse_pickle_weights(folder)
    required = ADAPTER_FILES if adapter else FULL_MODEL_FILES if extractor else ("config.json",)
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}, needed to use the model")
    files = [folder / name for name in required] + _weight_files(folder, adapter)
    if not adapter:
        files += _code_files(folder, json.loads((folder / "config.json").read_text()))
    elif (folder / "preprocessor_config.json").is_file():
        files.append(folder / "preprocessor_config.json")
    return files


def upload_files(run_dir: str | Path) -> dict[str, Path]:
    """What is published, as {path in the repository: file}, after checking the required files (the card excepted).

    A LoRA run (`adapter_config.json`) publishes the adapter and, under `base_model/`, the hf-ser model it adapts
    (hf_ser.training.lora writes it there), so `hf_ser.inference.loading.load_lora` works on a download of the repository."""
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    adapter = run["adapter_config"] is not None
    files = {path.name: path for path in _model_files(run_dir, adapter)}
    base_dir = run_dir / BASE_MODEL_DIR
    if adapter and not (base_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{run_dir} holds a LoRA adapter but no {BASE_MODEL_DIR}/ (the model it adapts, e.g. a run started from "
            "model_name_or_path): nobody could load the published adapter. Merge it first (hf-ser merge-lora) and "
            "publish the merged model"
        )
    if adapter:
        files.update(
            {f"{BASE_MODEL_DIR}/{path.name}": path for path in _model_files(base_dir, adapter=False, extractor=False)}
        )
    else:  # the demo app loads a full model with transformers alone; an adapter needs peft and its base_model/
        files.update({APP_FILE.name: APP_FILE, REQUIREMENTS_FILE.name: REQUIREMENTS_FILE})
    names = [*RESULT_FILES, *(path.name for path in confusion_images(run) if path.parent == run_dir)]
    files.update({name: run_dir / name for name in names if (run_dir / name).is_file()})
    if run["cv_dir"] is not None:
        files[CV_SUMMARY_FILE] = run["cv_dir"] / CV_SUMMARY_FILE
        files.update({path.name: path for path in confusion_images(run) if path.parent == run["cv_dir"]})
    return files


def _local_base_reference(adapter_config: Path, run_dir: Path) -> None:
    """An adapter's `base_model_name_or_path` that is a local folder means nothing on the Hub and shows the
    publisher's file system: the published copy names no base (the card and `base_model/` say what it is)."""
    config = json.loads(adapter_config.read_text())
    base = config.get("base_model_name_or_path")
    if base and (Path(base).is_absolute() or Path(base).exists() or (run_dir / base).exists()):
        config["base_model_name_or_path"] = None
        adapter_config.write_text(json.dumps(config, indent=2, sort_keys=True))


TEXT_SUFFIXES = (".json", ".md", ".txt", ".yaml", ".yml", ".csv")  # not the model code: it is the package's
# An absolute POSIX path: "/" then name characters, not inside a URL (`https://...`) or a relative path (`a/b`).
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[\w.@+~-]+(?:/[\w.@+~-]+)*")
REDACTED = "<local>"


def _local_roots(run_dir: Path) -> list[tuple[str, str]]:
    """(absolute prefix, what it becomes): the run folder `.`, the corpus folder its name; longest first."""
    run_config = read_json(run_dir / RUN_CONFIG_FILE, missing_ok=True) or {}
    roots = {}
    data_args = run_config.get("data_args") or {}
    for key in ("data_dir", "manifest"):
        if data_args.get(key):
            folder = Path(data_args[key]) if key == "data_dir" else Path(data_args[key]).parent
            for form in (folder.absolute(), folder.resolve()):
                roots[str(form)] = form.name or REDACTED
    for form in (run_dir.absolute(), run_dir.resolve()):
        roots[str(form)] = "."
    return sorted(roots.items(), key=lambda item: -len(item[0]))


def _without_local_paths(text: str, roots: list[tuple[str, str]]) -> str:
    for root, relative in roots:  # a root may hold spaces: replaced whole, where a path starts and the root ends
        text = re.sub(rf"(?<![\w.~/-]){re.escape(root)}(?![\w.@+~-])", lambda _, r=relative: r, text)

    def redact(match: re.Match) -> str:
        top = match[0].split("/")[1]
        # "/" + a folder of this machine (/home, /tmp, /work, ...) is a local path; other slashes ("/s") stay.
        local = os.path.isdir(f"/{top}") and match[0] != f"/{top}"
        return f"{REDACTED}/{Path(match[0]).name}" if local else match[0]

    return ABSOLUTE_PATH.sub(redact, text)


def redact_local_paths(folder: Path, run_dir: Path) -> list[str]:
    """Rewrite the absolute local paths in `folder`'s text files (see the module docstring); returns the files
    changed."""
    roots, changed = _local_roots(Path(run_dir)), []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix not in TEXT_SUFFIXES:
            continue
        text = path.read_text(encoding="utf-8")
        redacted = _without_local_paths(text, roots)
        if redacted != text:
            path.write_text(redacted, encoding="utf-8")
            changed.append(str(path.relative_to(folder)))
    return changed


def build_upload_folder(
    run_dir: str | Path, out_dir: str | Path | None = None, repo_id: Optional[str] = None, keep_readme: bool = False
) -> Path:
    """Copy what is published into `out_dir` (a new temporary folder by default) and write the model card there.

    The card is generated afresh from the run's files (naming `repo_id` in its snippets) unless `keep_readme` is set,
    in which case the run folder's own `README.md` is published as it is."""
    run_dir = Path(run_dir)
    files = upload_files(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="hf_ser_upload_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise FileExistsError(f"upload folder {out_dir} is not empty; give an empty or new folder")
    for name, path in files.items():
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out_dir / name)
    if (out_dir / "adapter_config.json").is_file():
        _local_base_reference(out_dir / "adapter_config.json", run_dir)
    if keep_readme:
        if not (run_dir / "README.md").is_file():
            raise FileNotFoundError(f"{run_dir / 'README.md'} is missing (drop keep_readme to generate the card)")
        shutil.copy2(run_dir / "README.md", out_dir / "README.md")
    else:
        save_model_card(run_dir, repo_id=repo_id, out_dir=out_dir)
    changed = redact_local_paths(out_dir, run_dir)
    if changed:
        logger.info("Local paths made relative or redacted in %s", ", ".join(changed))
    return out_dir


def build_space_folder(model_repo_id: str, out_dir: str | Path) -> Path:
    """The Space of a published model: the demo app, its requirements and a Space card naming the model."""
    from huggingface_hub import SpaceCard, SpaceCardData

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in (APP_FILE, REQUIREMENTS_FILE):
        shutil.copy2(path, out_dir / path.name)
    data = SpaceCardData(
        title=model_repo_id.split("/")[-1],
        sdk="gradio",
        sdk_version=SPACE_GRADIO_VERSION,
        app_file=APP_FILE.name,
        models=[model_repo_id],
        tags=["speech-emotion-recognition", "hf-ser"],
    )
    card = SpaceCard(
        f"---\n{data.to_yaml()}\n---\n\n# Speech emotion recognition: {model_repo_id}\n\n"
        f"Upload or record speech to see the emotion probabilities of [{model_repo_id}]"
        f"(https://huggingface.co/{model_repo_id}) (a dimensional model: the value of each dimension, such as "
        "arousal, valence and dominance) and, for longer recordings, the emotion timeline. The app reads "
        f"the model named by the Space variable `{MODEL_VARIABLE}`. Made with hf-ser (`hf-ser push --space`).\n"
    )
    card.save(out_dir / "README.md")
    return out_dir


def assert_no_secret(folder: Path, secret: Optional[str]) -> None:
    """Refuse to publish a folder in which a file contains the token."""
    if not secret:
        return
    needle = secret.encode()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and needle in path.read_bytes():
            raise ValueError(f"{path.name} contains the Hub token; it was not uploaded. Remove the token from it.")


def push_run(
    run_dir: str | Path,
    repo_id: str,
    private: Optional[bool] = False,
    token: Optional[str] = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    api: Any = None,
    keep_readme: bool = False,
    space_id: Optional[str] = None,
) -> Any:
    """Create the model repository (if needed) and upload the run's upload folder in one commit; with `space_id`,
    then create (or update) a Gradio Space of the demo app that reads this model.

    `token` defaults to the `huggingface_hub` login or `HF_TOKEN`. `api` is an `HfApi` (or anything with its
    `create_repo` / `upload_folder` / `add_space_variable`); returns what the model's `upload_folder` returns (the
    commit info)."""
    from huggingface_hub import HfApi, get_token

    secret = token or get_token()
    if secret is None and api is None:  # create_repo would fail with a long HTTP traceback; say what to do instead
        raise PermissionError("no Hugging Face token: run `hf auth login` (or set HF_TOKEN), then push again")
    api = api if api is not None else HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="hf_ser_upload_") as tmp:
        folder = build_upload_folder(run_dir, Path(tmp) / "upload", repo_id=repo_id, keep_readme=keep_readme)
        if space_id and not (folder / APP_FILE.name).is_file():
            raise ValueError(
                f"{run_dir} is a LoRA adapter: its Space could not load it with transformers alone. Merge it first "
                "(hf-ser merge-lora) and push the merged model with --space"
            )
        assert_no_secret(folder, secret)
        repo = api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
        repo_id = getattr(repo, "repo_id", None) or repo_id  # "name" alone becomes "user/name"
        logger.info("Uploading %d file(s) from %s to %s", sum(p.is_file() for p in folder.rglob("*")), run_dir, repo_id)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), commit_message=commit_message, repo_type="model"
        )
        if space_id:
            push_space(api, space_id, repo_id, Path(tmp) / "space", private=private)
        return commit


def push_space(api: Any, space_id: str, model_repo_id: str, folder: Path, private: Optional[bool] = False) -> Any:
    """Create the Gradio Space `space_id` (if needed), point its `HF_SER_MODEL` variable at the model repository and
    upload the demo app. A private model needs an `HF_TOKEN` secret in the Space to be readable from it."""
    build_space_folder(model_repo_id, folder)
    space = api.create_repo(repo_id=space_id, private=private, exist_ok=True, repo_type="space", space_sdk="gradio")
    space_id = getattr(space, "repo_id", None) or space_id
    api.add_space_variable(space_id, MODEL_VARIABLE, model_repo_id)
    logger.info("Uploading the demo app of %s to the Space %s", model_repo_id, space_id)
    return api.upload_folder(
        repo_id=space_id, folder_path=str(folder), commit_message=f"Demo of {model_repo_id}", repo_type="space"
    )


def main(argv: Optional[list[str]] = None) -> Any:
    parser = argparse.ArgumentParser(
        prog="hf-ser push",
        description="Upload a run folder (hf-ser train / hf-ser cv fold) to the Hugging Face Hub with its model card. "
        "Log in first (`hf auth login`) or set HF_TOKEN.",
    )
    parser.add_argument("run_dir", help="the run folder (a training output_dir)")
    parser.add_argument("--repo-id", "--repo_id", dest="repo_id", required=True, help="`user/name` or `org/name`")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--commit-message", "--commit_message", dest="commit_message", default=DEFAULT_COMMIT_MESSAGE)
    parser.add_argument(
        "--keep-readme",
        "--keep_readme",
        dest="keep_readme",
        action="store_true",
        help="publish the run folder's README.md as it is instead of a freshly generated card",
    )
    parser.add_argument(
        "--dry-run",
        "--dry_run",
        dest="dry_run",
        metavar="DIR",
        help="only build the upload folder in DIR and list it; nothing is sent",
    )
    parser.add_argument(
        "--space",
        nargs="?",
        const="",
        metavar="SPACE_ID",
        help="also create a Gradio Space of the demo app reading this model (default id: the model's --repo-id)",
    )
    args = parser.parse_args(argv)
    if args.dry_run:
        folder = build_upload_folder(args.run_dir, args.dry_run, repo_id=args.repo_id, keep_readme=args.keep_readme)
        print("\n".join(sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())))
        return folder
    commit = push_run(
        args.run_dir,
        args.repo_id,
        private=args.private,
        commit_message=args.commit_message,
        keep_readme=args.keep_readme,
        space_id=None if args.space is None else args.space or args.repo_id,
    )
    print(getattr(commit, "commit_url", commit))
    return commit
