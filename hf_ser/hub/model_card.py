"""The model card (README.md) of a run folder, built with `huggingface_hub.ModelCard` from the files the run wrote.

Sources, all in the run folder: `config.json` (or `adapter_config.json` for a PEFT adapter), `data_report.json`
(corpus, labels, protocol, splits), `eval_results.json` / `test_results.json`, `run_config.json` (the recipe's three
argument groups), `trainer_state.json`, and `cv_summary.json` when the run belongs to a cross-validation (in the run
folder, or in its parent when the run is a `fold-XX` folder). Nothing is invented: a section whose source is missing
says so.
"""

from __future__ import annotations

import json
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_ser.data.dataset import absent_label_warning
from hf_ser.data.votes import describe_votes
from hf_ser.evaluation.bootstrap import read_interval
from hf_ser.evaluation.metrics import ccc_key, percent
from hf_ser.hub.citations import BACKBONE_CITATIONS, CORPUS_INFO, HEAD_FUSION_CITATION, LORA_CITATION
from hf_ser.run_folder import BASE_MODEL_DIR, CV_SUMMARY_FILE, SPLIT_PREFIXES, read_json, results_file

TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md"
TASK = "audio-classification"
TAGS = ["speech-emotion-recognition", "hf-ser", "audio-classification"]
SPLIT_FILES = {split: results_file(prefix) for split, prefix in SPLIT_PREFIXES.items()}
# model-index metric ids (https://hf.co/metrics): WA is accuracy, UA macro recall, and macro-F1.
METRICS = (
    ("wa", "accuracy", "WA (accuracy)", None),
    ("ua", "recall", "UA (unweighted average recall)", {"average": "macro"}),
    ("macro_f1", "f1", "macro-F1", {"average": "macro"}),
)
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")

HYPERPARAMETERS = {
    "model_args": (
        "model_type",
        "backbone",
        "pooling",
        "use_weighted_layer_sum",
        "head_hidden_sizes",
        "head_dropout",
        "head_batch_norm",
        "freeze_feature_encoder",
        "class_weights",
        "peft",
    ),
    "data_args": (
        "sampling_rate",
        "max_duration_seconds",
        "pad_to_max_duration",
        "eval_max_duration_seconds",
        "augmentations",
        "batch_augmentations",
        "labels",
        "label_map",
        "label_targets",
    ),
    "training_args": (
        "learning_rate",
        "encoder_learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "weight_decay",
        "optim",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "freeze_encoder_steps",
        "early_stopping_patience",
        "metric_for_best_model",
        "bf16",
        "fp16",
        "seed",
    ),
}


def find_cv_summary(run_dir: Path) -> Optional[Path]:
    """`cv_summary.json` of the run: in the run folder, or in the CV folder above a `fold-XX` run."""
    for candidate in (run_dir / CV_SUMMARY_FILE, run_dir.parent / CV_SUMMARY_FILE):
        if candidate.is_file() and (candidate.parent == run_dir or run_dir.name.startswith("fold-")):
            return candidate
    return None


def read_run(run_dir: str | Path) -> dict:
    """Everything the card needs from a run folder; refuses a folder without a model config or data report."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} does not exist")
    run = {
        name: read_json(run_dir / f"{name}.json", missing_ok=True)
        for name in (
            "config",
            "adapter_config",
            "preprocessor_config",
            "data_report",
            "eval_results",
            "test_results",
            "run_config",
            "trainer_state",
        )
    }
    if run["config"] is None and run["adapter_config"] is not None:
        run["config"] = read_json(run_dir / BASE_MODEL_DIR / "config.json", missing_ok=True)
    if run["config"] is None and run["adapter_config"] is None:
        raise FileNotFoundError(f"{run_dir}: no config.json or adapter_config.json; is this a hf-ser run folder?")
    if run["data_report"] is None:
        raise FileNotFoundError(
            f"{run_dir / 'data_report.json'} is missing: the card states the data and protocol "
            "from it (hf-ser train writes it)"
        )
    cv_path = find_cv_summary(run_dir)
    summary = read_json(cv_path, missing_ok=True) if cv_path else None
    scored = {row.get("run", row.get("fold")) for row in (summary or {}).get("folds", [])}
    if summary and cv_path.parent != run_dir and run_dir.name not in scored:
        summary = None  # e.g. the validation run of a refit CV: the summary's scores are other models'
    run["cv_summary"] = summary
    run["cv_dir"] = cv_path.parent if cv_path else None
    run["run_dir"] = run_dir
    return run


def confusion_images(run: dict) -> list[Path]:
    """The confusion-matrix PNGs that go with the card: test, validation, and the CV total when there is one."""
    paths = [run["run_dir"] / name for name in ("confusion_matrix.png", "confusion_matrix_validation.png")]
    if run["cv_dir"] is not None:
        paths.append(run["cv_dir"] / "cv_confusion_matrix.png")
    return [path for path in paths if path.is_file()]


def _args(run: dict, group: str) -> dict:
    return (run["run_config"] or {}).get(group) or {}


def is_hub_id(name: Optional[str]) -> bool:
    return bool(name) and HUB_ID.match(name) is not None and not Path(name).exists()


def base_model_of(run: dict) -> Optional[str]:
    """The Hub id this model was fine-tuned from (an adapter's base, else the pretrained backbone), if any."""
    candidates = [
        (run["adapter_config"] or {}).get("base_model_name_or_path"),
        _args(run, "model_args").get("model_name_or_path"),
        _args(run, "model_args").get("backbone"),
        ((run["config"] or {}).get("backbone_config") or {}).get("_name_or_path"),
    ]
    return next((name for name in candidates if is_hub_id(name)), None)


def _ua_cell(scores: dict, prefix: str, labels: list[str]) -> str:
    """UA as a percentage; when the split lacked classes, over how many classes it averages and which are missing."""
    absent = scores.get(f"{prefix}_absent_classes") or []
    cell = percent(scores.get(f"{prefix}_ua"), interval=read_interval(scores, prefix, "ua"))
    if absent:
        cell += f" (over {len(labels) - len(absent)} of {len(labels)} classes; no {', '.join(absent)})"
    return cell


def is_dimensional(run: dict) -> bool:
    """A dimensional model (`task: dimensional`): its config's `problem_type` is regression."""
    return (run["config"] or {}).get("problem_type") == "regression"


def _ccc_cell(scores: dict, prefix: str, dimension: Optional[str] = None) -> str:
    """A CCC with three decimals and its interval in brackets when the results file has one."""
    key = ccc_key(dimension)
    value = scores.get(f"{prefix}_{key}")
    if value is None:
        return "–"
    interval = read_interval(scores, prefix, key)
    return f"{value:.3f}" + (f" (95 % CI {interval[0]:.3f}–{interval[1]:.3f})" if interval else "")


def _dimensional_eval_results(run: dict, dataset_type: str, dataset_name: str, dimensions: list[str]) -> list:
    """The model-index entries of a dimensional model: the CCC of each dimension and their mean, per split."""
    results = []
    for split, filename in SPLIT_FILES.items():
        scores, prefix = run[filename.removesuffix(".json")] or {}, SPLIT_PREFIXES[split]
        for dimension in [*dimensions, None]:
            if f"{prefix}_{ccc_key(dimension)}" in scores:
                results.append(
                    EvalResult(
                        task_type=TASK,
                        task_name="Dimensional speech emotion recognition",
                        dataset_type=dataset_type,
                        dataset_name=dataset_name,
                        dataset_split=split,
                        metric_type="ccc",
                        metric_name=f"{split} CCC {dimension}" if dimension else f"{split} mean CCC",
                        metric_value=round(float(scores[f"{prefix}_{ccc_key(dimension)}"]), 4),
                    )
                )
    return results


def _eval_results(run: dict, dataset_type: str, dataset_name: str) -> list[EvalResult]:
    results = []
    for split, filename in SPLIT_FILES.items():
        scores, prefix = run[filename.removesuffix(".json")], SPLIT_PREFIXES[split]
        for key, metric_type, metric_name, metric_args in METRICS:
            if scores and f"{prefix}_{key}" in scores:
                results.append(
                    EvalResult(
                        task_type=TASK,
                        task_name="Speech emotion recognition",
                        dataset_type=dataset_type,
                        dataset_name=dataset_name,
                        dataset_split=split,
                        metric_type=metric_type,
                        metric_name=f"{split} {metric_name}",
                        metric_args=metric_args,
                        metric_value=round(float(scores[f"{prefix}_{key}"]), 4),
                    )
                )
    cv = run["cv_summary"]
    if cv:
        rule = f"{cv['protocol']['folds']}, mean of {cv['protocol']['n_folds']} folds"
        for key, metric_type, metric_name, metric_args in METRICS:
            results.append(
                EvalResult(
                    task_type=TASK,
                    task_name="Speech emotion recognition",
                    dataset_type=dataset_type,
                    dataset_name=dataset_name,
                    dataset_split="test",
                    metric_type=metric_type,
                    metric_name=f"cross-validation {metric_name} ({rule})",
                    metric_args=metric_args,
                    metric_value=round(float(cv["mean"][key]), 4),
                )
            )
    return results


def _bootstrap_statement(run: dict) -> Optional[str]:
    """How the card's confidence intervals were drawn, from the results files that carry them."""
    drawn = [
        f"{split}: {scores[f'{prefix}_bootstrap_samples']} resamples of its {scores.get(f'{prefix}_samples', '?')} "
        f"clips, seed {scores.get(f'{prefix}_bootstrap_seed')}"
        for split, filename in SPLIT_FILES.items()
        if (scores := run[filename.removesuffix(".json")] or {})
        and f"{(prefix := SPLIT_PREFIXES[split])}_bootstrap_samples" in scores
    ]
    return "; ".join(drawn) or None


def _parameters(run: dict) -> Optional[dict]:
    counted = (run["run_config"] or {}).get("parameters")
    if counted:
        return counted
    weights = run["run_dir"] / "model.safetensors"
    if not weights.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(weights), framework="numpy") as handle:
        total = 0
        for name in handle.keys():
            size = 1
            for dim in handle.get_slice(name).get_shape():
                size *= dim
            total += size
    return {"total": total}


def _model_lines(run: dict, base_model: Optional[str]) -> list[str]:
    config = run["config"] or {}
    lines = []
    if config.get("model_type") == "ser-cnn":
        lines.append(
            f"Architecture: `SERCNN` (hf-ser `ser-cnn`), {HEAD_FUSION_CITATION[0]}, on "
            f"{config.get('feature_type', 'spectral')} features that it computes from the waveform itself."
        )
    elif config.get("model_type") == "wav2vec2-ser":
        encoder = config.get("backbone_config") or {}
        layers, hidden = encoder.get("num_hidden_layers") or encoder.get("encoder_layers"), encoder.get("hidden_size")
        origin = f"initialised from `{base_model}`" if base_model else "trained from randomly initialised weights"
        pooled = "a learned weighted sum of all layers, " if config.get("use_weighted_layer_sum") else ""
        lines.append(
            f"Architecture: `Wav2Vec2SER` (hf-ser `wav2vec2-ser`): a {encoder.get('model_type', '?')} speech encoder "
            f"({layers} layers, hidden size {hidden}) {origin}; {pooled}`{config.get('pooling')}` pooling over frames; "
            f"an MLP head with hidden sizes {config.get('head_hidden_sizes')} (BatchNorm: "
            f"{'yes' if config.get('head_batch_norm') else 'no'}, dropout {config.get('head_dropout')})."
        )
    if run["adapter_config"]:
        adapter = run["adapter_config"]
        lines.append(
            f"This repository holds a PEFT adapter ({adapter.get('peft_type')}, rank {adapter.get('r')}) "
            f"for the base model `{base_model or adapter.get('base_model_name_or_path')}`, not a full model."
        )
    parameters = _parameters(run)
    if parameters:
        trained = f" ({parameters['trainable']:,} trained)" if parameters.get("trainable") is not None else ""
        lines.append(f"Parameters: {parameters['total']:,}{trained}.")
    rate = (run["preprocessor_config"] or {}).get("sampling_rate") or _args(run, "data_args").get("sampling_rate")
    output = (
        "one value per dimension, on the scale of the training corpus (no softmax)"
        if is_dimensional(run)
        else "one logit per label (softmax for probabilities)"
    )
    if rate:
        lines.append(
            f"Input: mono audio at {rate} Hz (decode and resample files to it first: see How to use); output: {output}."
        )
    return lines


def _data_lines(run: dict, corpus: dict, labels: list[str]) -> list[str]:
    report, training = run["data_report"], _args(run, "training_args")
    lines = [f"Corpus: {corpus['name']}" + (f": {corpus['facts']}." if corpus.get("facts") else ".")]
    selection = (training.get("metric_for_best_model") or "ua").removeprefix("eval_")
    selection = {"ua": "UA", "wa": "WA", "macro_f1": "macro-F1", "ccc": "mean CCC"}.get(selection, selection)
    selection = selection.replace("ccc_", "CCC of ")
    if report.get("protocol") == "speaker-independent" and "validation" not in report.get("splits", {}):
        epochs = (run["trainer_state"] or {}).get("epoch", training.get("num_train_epochs"))
        length = f"after {epochs:g} epochs" if epochs is not None else "at the end"
        lines.append(
            "Protocol: **speaker-independent**. No speaker is in both training and test. There was no validation "
            f"split: these are the weights {length} of a run of fixed length (no checkpoint was chosen); the test "
            "speakers were scored once, after training."
        )
    elif report.get("protocol") == "speaker-independent":
        lines.append(
            "Protocol: **speaker-independent**. No speaker is in more than one of training, validation and "
            f"test. The checkpoint was chosen on the validation speakers (validation {selection}); the test "
            "speakers were scored once, after training."
        )
    else:
        lines.append(
            f"Protocol: **{report.get('protocol')}** (split by file). Speakers appear in more than one split, "
            "so these scores overestimate accuracy on new speakers."
        )
    if is_dimensional(run):
        means = (report.get("splits", {}).get("train") or {}).get("dimension_means") or {}
        lines.append(
            f"Dimensions: {', '.join(labels)}, regressed on the corpus's own scale"
            + (f" (training-split means: {', '.join(f'{k} {v:.2f}' for k, v in means.items())})" if means else "")
            + "."
        )
    else:
        lines.append(f"Labels used: {', '.join(labels)}.")
    if report.get("split_rule"):
        lines.append(f"Split: {report['split_rule']}.")
    lines += [
        f"**{absent_label_warning(name, split, labels)}.**"
        for name, split in report.get("splits", {}).items()
        if split.get("absent_labels")
    ]
    if report.get("label_votes"):
        lines.append(
            f"Trained on {describe_votes(report['label_votes'])} (soft cross-entropy); validation and test score the "
            "hard (consensus) labels."
        )
    if report.get("skipped"):
        lines.append(f"{len(report['skipped'])} file(s) were skipped (listed with reasons in `data_report.json`).")
    state = run["trainer_state"]
    if state and state.get("best_global_step") is not None:
        best = state.get("best_metric")
        best_text = None if best is None else f"{best:.3f}" if is_dimensional(run) else percent(best)
        lines.append(
            f"Training ran {state.get('epoch', 0):g} epoch(s) ({state.get('global_step')} steps); the best "
            f"checkpoint is step {state['best_global_step']}"
            + (f" (validation {selection} {best_text})." if best_text else ".")
        )
    return lines


def _usage(run: dict, model_ref: str, base_model: Optional[str]) -> str:
    if run["adapter_config"]:
        base = base_model or (run["adapter_config"] or {}).get("base_model_name_or_path")
        where = (
            f"`{BASE_MODEL_DIR}/` holds the hf-ser model it adapts"
            if base_model_dir_of(run)
            else f"its base model is `{base}`"
        )
        return (
            f"A LoRA adapter (PEFT); {where}. With hf-ser installed:\n\n"
            "```python\nfrom huggingface_hub import snapshot_download\nfrom hf_ser.inference.loading import load_lora, merge_lora\n\n"
            f'model = load_lora(snapshot_download("{model_ref}"))  # PeftModel, ready for inference\n'
            f'merge_lora(snapshot_download("{model_ref}"), "merged")  # or a plain checkpoint for pipeline()\n```'
        )
    return (
        "The `pipeline` reads audio files only through FFmpeg and resamples only with torchaudio, so these snippets "
        "decode the file themselves (any format soundfile reads, any sampling rate, any number of channels) and hand "
        "the pipeline mono audio at the model's own rate.\n\n"
        "With hf-ser installed (`import hf_ser` registers the architectures, so no remote code runs; "
        "`hf_ser.load_audio` is the decoding hf-ser trains with):\n\n"
        "```python\nimport hf_ser\nfrom transformers import pipeline\n\n"
        f'classifier = pipeline("audio-classification", model="{model_ref}")\n'
        "rate = classifier.feature_extractor.sampling_rate\n"
        'audio = hf_ser.load_audio("speech.wav", sampling_rate=rate)  # mono float32 at the model\'s rate\n'
        'print(classifier({"raw": audio, "sampling_rate": rate}, top_k=None))  # every label with its score\n```\n\n'
        "Without hf-ser (`pip install torch transformers soundfile soxr`): the model's code travels with it, hence "
        "`trust_remote_code=True`, and soundfile + soxr decode as `hf_ser.load_audio` does:\n\n"
        "```python\nimport soundfile\nimport soxr\nfrom transformers import pipeline\n\n"
        f'classifier = pipeline("audio-classification", model="{model_ref}", trust_remote_code=True)\n'
        "rate = classifier.feature_extractor.sampling_rate\n"
        'samples, file_rate = soundfile.read("speech.wav", dtype="float32", always_2d=True)\n'
        "audio = soxr.resample(samples.mean(axis=1), file_rate, rate)  # mono, at the model's rate\n"
        'print(classifier({"raw": audio, "sampling_rate": rate}, top_k=None))\n```\n\n'
        "The model and its feature extractor without the pipeline (add `trust_remote_code=True` without hf-ser):\n\n"
        "```python\nimport hf_ser\nfrom transformers import AutoFeatureExtractor, AutoModelForAudioClassification\n\n"
        f'model = AutoModelForAudioClassification.from_pretrained("{model_ref}")\n'
        f'feature_extractor = AutoFeatureExtractor.from_pretrained("{model_ref}")\n```\n\n'
        f"To score a labelled corpus: `hf-ser evaluate {model_ref} --dataset ... --data_dir ... --output_dir ...`."
    )


def base_model_dir_of(run: dict) -> bool:
    return (run["run_dir"] / BASE_MODEL_DIR / "config.json").is_file()


def _limitations(run: dict, corpus: dict, labels: list[str]) -> list[str]:
    report = run["data_report"]
    speakers = sorted({s for split in report.get("splits", {}).values() for s in split.get("speakers", [])})
    test_speakers = report.get("splits", {}).get("test", {}).get("speakers", [])
    language = corpus.get("language")
    lines = [
        f"Training data: {corpus['facts'] if corpus.get('facts') else corpus['name']}. "
        + (f"{len(speakers)} speakers in all. " if speakers else "")
        + (
            "Acted emotions are more intense and prototypical than those of everyday speech: expect lower accuracy "
            "on natural, spontaneous speech"
            if corpus.get("acted")
            else "Expect lower accuracy on speech unlike the training corpus: acted versus natural, spontaneous speech"
        )
        + (f", on languages other than `{language}`" if language else "")
        + ", on other microphones and rooms, and on voices unlike the training speakers (age, accent, health).",
        f"The model always answers a value of each of {', '.join(labels)} on its training corpus's scale, also for "
        "silence, music or no speech. It estimates expressed emotion in the voice, not what a person feels."
        if is_dimensional(run)
        else f"The label set is closed: the model always answers one of {', '.join(labels)}, also for silence, "
        "music, mixed or no emotion. It recognises expressed emotion in the voice, not what a person feels.",
        "Demographic coverage is that of the corpus: it is small and not representative of any population; "
        "accuracy can differ between groups of speakers and was not measured per group.",
    ]
    if test_speakers:
        lines.append(
            f"The test scores come from {len(test_speakers)} held-out speaker(s) "
            f"({', '.join(test_speakers)}): a small sample with wide uncertainty."
        )
    lines += [
        "Consent: a person's emotional state is sensitive personal information. Analyse only the voices of people "
        "who know about it and agree; the corpus licence governs the use of its recordings.",
        "Misuse: do not use this model for surveillance, hiring or employee assessment, education or exam "
        "proctoring, lie detection, policing, or credit and insurance decisions, nor for any decision about a person. "
        "Emotion recognition from voice is not reliable enough for that, and the EU AI Act prohibits emotion "
        "recognition in workplaces and education.",
    ]
    return lines


def _citations(run: dict, corpus: dict) -> list[dict]:
    citations = (
        [
            {
                "what": "hf-ser's implementation of this architecture builds on " + HEAD_FUSION_CITATION[0],
                "bibtex": HEAD_FUSION_CITATION[1],
            }
        ]
        if (run["config"] or {}).get("model_type") == "ser-cnn"
        else []
    )
    family = (((run["config"] or {}).get("backbone_config")) or {}).get("model_type")
    if family in BACKBONE_CITATIONS:
        what, bibtex = BACKBONE_CITATIONS[family]
        citations.append({"what": f"The speech encoder: {what}", "bibtex": bibtex})
    if run["adapter_config"]:
        citations.append({"what": LORA_CITATION[0], "bibtex": LORA_CITATION[1]})
    if corpus.get("bibtex"):
        citations.append({"what": f"The corpus: {corpus['name']}", "bibtex": corpus["bibtex"]})
    return citations


def _hyperparameters(run: dict) -> list[tuple[str, str]]:
    items = []
    for group, keys in HYPERPARAMETERS.items():
        values = _args(run, group)
        for key in keys:
            value = values.get(key)
            if value in (None, [], {}, False) or (key, value) in (("max_steps", -1), ("label_targets", "hard")):
                continue
            items.append((key, json.dumps(value) if isinstance(value, (list, dict)) else str(value)))
    return items


def _versions(run: dict) -> list[tuple[str, str]]:
    names = ["hf-ser", "transformers", "torch", "datasets", "huggingface_hub"] + (
        ["peft"] if run["adapter_config"] else []
    )
    found = []
    for name in names:
        try:
            found.append((name, version(name)))
        except PackageNotFoundError:
            continue
    return found


def build_model_card(run_dir: str | Path, repo_id: Optional[str] = None, license: str = "apache-2.0") -> ModelCard:
    """The card of a run folder. `repo_id` names the model in the card and its code snippets (default: the folder)."""
    run = read_run(run_dir)
    report = run["data_report"]
    dataset = report.get("dataset") or "unknown"
    corpus = CORPUS_INFO.get(dataset) or {
        "name": f"`{dataset}`" if dataset in ("audiofolder", "csv", "jsonl") else dataset,
        "language": None,
        "facts": None,
        "bibtex": None,
    }
    if dataset in ("audiofolder", "csv", "jsonl"):
        corpus["name"] = f"a local {dataset} corpus"
    labels = report.get("labels") or list(((run["config"] or {}).get("id2label") or {}).values())
    base_model = base_model_of(run)
    model_ref = repo_id or str(Path(run_dir))
    model_name = (repo_id or Path(run_dir).resolve().name).split("/")[-1]
    model_type = (run["config"] or {}).get("model_type")
    backbone_family = (((run["config"] or {}).get("backbone_config")) or {}).get("model_type")
    dimensional = is_dimensional(run)

    card_data = ModelCardData(
        library_name="peft" if run["adapter_config"] else "transformers",
        pipeline_tag=TASK,
        license=license,
        language=corpus.get("language"),
        base_model=base_model,
        datasets=[dataset] if is_hub_id(dataset) else None,
        metrics=["ccc"] if dimensional else ["accuracy", "recall", "f1"],
        tags=TAGS
        + [tag for tag in (model_type, backbone_family) if tag]
        + (["peft", "lora"] if run["adapter_config"] else []),
        model_name=model_name,
        eval_results=(
            _dimensional_eval_results(run, dataset, corpus["name"], labels)
            if dimensional
            else _eval_results(run, dataset, corpus["name"])
        )
        or None,
    )
    dimension_rows = None
    if dimensional:
        dimension_rows = [
            {
                "split": split,
                "count": scores.get(f"{(prefix := SPLIT_PREFIXES[split])}_samples", "?"),
                "cells": [_ccc_cell(scores, prefix, name) for name in labels],
                "mean": _ccc_cell(scores, prefix),
            }
            for split, filename in SPLIT_FILES.items()
            if (scores := run[filename.removesuffix(".json")])
        ]
    cv = run["cv_summary"]
    result_rows = [
        {
            "split": split,
            "count": scores.get(f"{(prefix := SPLIT_PREFIXES[split])}_samples", "?"),
            **{
                key: percent(scores.get(f"{prefix}_{key}"), interval=read_interval(scores, prefix, key))
                for key, *_ in METRICS
            },
            "ua": _ua_cell(scores, prefix, labels),
        }
        for split, filename in SPLIT_FILES.items()
        if (scores := run[filename.removesuffix(".json")])
    ]
    result_files = [f"`{name}`" for name in SPLIT_FILES.values() if run[name.removesuffix(".json")]]
    result_files += ["`cv_summary.json`"] if cv else []
    speakers_of = {name: split.get("speakers") or [] for name, split in report.get("splits", {}).items()}
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        summary=(
            f"Dimensional speech emotion recognition ({', '.join(labels)})"
            if dimensional
            else f"Speech emotion recognition with {len(labels)} labels"
        )
        + f", trained with hf-ser on {corpus['name']} ({report.get('protocol')} evaluation).",
        dimension_rows=dimension_rows,
        labels_only=labels,
        model_lines=_model_lines(run, base_model),
        labels=list(enumerate(labels)),
        data_lines=_data_lines(run, corpus, labels),
        split_rows=[
            {
                "name": name,
                "count": split.get("items"),
                "minutes": f"{split.get('seconds', 0) / 60:.1f}",
                "speakers": ", ".join(speakers_of[name]) or "–",
            }
            for name, split in report.get("splits", {}).items()
        ],
        result_rows=result_rows,
        result_files=", ".join(result_files) or "none",
        bootstrap=_bootstrap_statement(run),
        cv=cv
        and {
            "statement": f"{cv['protocol']['evaluation']}; folds: {cv['protocol']['folds']} "
            f"({cv['protocol']['n_folds']} folds)."
            + (f" Model per fold: {cv['protocol']['model_selection']}." if "validation_runs" in cv else ""),
            "std_rule": cv["protocol"].get("std", "standard deviation over folds"),
            **{key: percent(cv["mean"][key], cv["std"][key], unit="") for key, *_ in METRICS},
            "rows": [
                {
                    "fold": row["fold"],
                    "speakers": ", ".join(row["test_speakers"]),
                    **{key: percent(row[key], unit="") for key, *_ in METRICS},
                }
                for row in cv["folds"]
            ],
        },
        confusion_images=[path.name for path in confusion_images(run)],
        hyperparameters=_hyperparameters(run),
        has_run_config=run["run_config"] is not None,
        usage=_usage(run, model_ref, base_model),
        limitations=_limitations(run, corpus, labels),
        citations=_citations(run, corpus),
        versions=_versions(run),
    )
    return card


def save_model_card(
    run_dir: str | Path, repo_id: Optional[str] = None, out_dir: str | Path | None = None, license: str = "apache-2.0"
) -> Path:
    """Write the run's card as `README.md` (into the run folder unless `out_dir` is given); returns its path."""
    path = Path(out_dir or run_dir) / "README.md"
    build_model_card(run_dir, repo_id=repo_id, license=license).save(path)
    return path
