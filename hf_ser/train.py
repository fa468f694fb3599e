"""Train a speech emotion recognition model from a recipe.

    python hf_ser/train.py recipes/demo.yaml [--key value ...]
    accelerate launch [--config_file accelerate_configs/X.yaml] hf_ser/train.py recipes/large.yaml [--key value ...]
    hf-ser train recipes/emodb.yaml --output_dir outputs/emodb

From Python, with the three argument dataclasses (`hf_ser.arguments`):

    import hf_ser
    results = hf_ser.train(model_args, data_args, training_args)

Parse -> seed -> data -> model -> Trainer -> train -> evaluate validation and test -> save.
"""

import os
import sys

# Run as a script, Python puts hf_ser/ first on sys.path, where data.py or metrics.py could shadow other modules.
_here = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _here:
    sys.path[0] = os.path.dirname(_here)

import logging  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import transformers  # noqa: E402
from transformers import EarlyStoppingCallback, enable_full_determinism, set_seed  # noqa: E402

from hf_ser.arguments import (  # noqa: E402
    DataArguments,
    ModelArguments,
    SERTrainingArguments,
    dimensional_problems,
    parse_args,  # noqa: E402
)
from hf_ser.data.batch_augment import build_batch_augmenter, check_batch_input  # noqa: E402
from hf_ser.data.collator import SERDataCollator  # noqa: E402
from hf_ser.data.dataset import (  # noqa: E402
    CheckedCorpus,
    balanced_class_weights,
    check_corpus,
    split_checked_corpus,
)
from hf_ser.data.transforms import EpochCallback, attach_transforms, clean_training_view  # noqa: E402
from hf_ser.evaluation.final import evaluate_and_save, print_end_summary  # noqa: E402
from hf_ser.evaluation.metrics import compute_metrics, dimensional_compute_metrics  # noqa: E402
from hf_ser.hub.model_card import save_model_card  # noqa: E402
from hf_ser.hub.publish import push_run  # noqa: E402
from hf_ser.models.modeling_wav2vec2_ser import encodes_whisper_at_clip_length  # noqa: E402
from hf_ser.run_folder import SPLIT_PREFIXES, save_run_config  # noqa: E402
from hf_ser.training.callbacks import (  # noqa: E402
    FreezeEncoderCallback,
    PreciseBatchNormCallback,
    check_batch_norm_batch_size,
    resolve_precise_bn_batches,
)
from hf_ser.training.checkpoints import (  # noqa: E402
    ValidationOnlyCallback,
    check_selection_uses_validation,
    checkpoint_to_resume,
    refuse_finished_run,
    refuse_selection_without_validation,
)
from hf_ser.training.distributed import prepare_model_for_processes, weights_built_whole  # noqa: E402
from hf_ser.training.lora import prepare_lora  # noqa: E402
from hf_ser.training.model_building import (  # noqa: E402
    backbone_config_of,
    build_feature_extractor,
    build_model,
    start_at_training_means,
)
from hf_ser.training.trainer import SERTrainer  # noqa: E402

logger = logging.getLogger("hf_ser.train")


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: SERTrainingArguments,
    callbacks: Optional[list] = None,
    corpus: Optional[CheckedCorpus] = None,
    evaluate_test: bool = True,
) -> dict:
    """Train, evaluate validation and test, save the model and its card into `training_args.output_dir`; returns all
    metrics. `callbacks` are extra `TrainerCallback`s; `corpus` is the data already checked by
    `hf_ser.data.dataset.check_corpus` (cross-validation and seeds check it once for all their runs);
    `evaluate_test=False` scores validation only (a sweep's trials: the test split is never predicted)."""
    refuse_finished_run(training_args)
    if data_args.dimensional and (problems := dimensional_problems(model_args, data_args, training_args)):
        raise ValueError("; ".join(problems))  # what `parse_args` refuses, for arguments built in Python
    batch_augmenter = build_batch_augmenter(data_args.batch_augmentations, seed=training_args.seed)  # bad keys: now
    if training_args.hub_token:
        # The Trainer pickles these arguments into training_args.bin in every checkpoint; huggingface_hub reads
        # HF_TOKEN when pushing, so the token moves there, before any file is written, and never reaches one.
        os.environ["HF_TOKEN"], training_args.hub_token = training_args.hub_token, None
    # hf_ser.hub.publish pushes once, after the test evaluation, with our card, code files and metrics; the Trainer's own
    # push would create the repo before training and upload every checkpoint with training_args.bin and a generic
    # card.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    # `full_determinism: true` also makes GPU kernels deterministic (docs/reliability.md), before the model exists.
    (enable_full_determinism if training_args.full_determinism else set_seed)(training_args.seed)

    with training_args.main_process_first(desc="corpus"):  # one process generates, decodes and caches; the rest reuse
        splits, label_names, report = split_checked_corpus(
            corpus or check_corpus(data_args), data_args, seed=training_args.seed
        )
    refuse_selection_without_validation(training_args, splits)
    if training_args.process_index == 0:
        report.save(training_args.output_dir)
        print(report.split_summary(), flush=True)  # printed whatever the log level: what this run trains and scores on

    class_weights = None
    if model_args.class_weights == "balanced":
        class_weights = balanced_class_weights(splits["train"], len(label_names))
    feature_extractor = build_feature_extractor(model_args, data_args.sampling_rate, backbone_config_of(model_args))
    if batch_augmenter is not None:
        check_batch_input(feature_extractor.model_input_names[0])
        batch_augmenter.num_labels = len(label_names)  # Mixup turns class ids into mixed label distributions
    with weights_built_whole(training_args):  # ZeRO-3 partitions it later, when the Trainer prepares it
        model = build_model(
            model_args,
            label_names,
            class_weights,
            sampling_rate=data_args.sampling_rate,
            dimensional=data_args.dimensional,
        )
        if data_args.dimensional and not model_args.model_name_or_path:
            start_at_training_means(model, list(report.splits["train"]["dimension_means"].values()))
    if model_args.peft:
        model = prepare_lora(
            model,
            model_args.peft,
            training_args.output_dir,
            model_args.model_name_or_path,
            save_base=training_args.process_index == 0,
        )
    model = prepare_model_for_processes(model, training_args)
    if training_args.process_index == 0:
        save_run_config(training_args.output_dir, model_args, data_args, training_args, model)
    data_seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    clip_length = encodes_whisper_at_clip_length(model.config)  # Mel frames only as far as the model encodes them
    attach_transforms(splits, feature_extractor, data_args, seed=data_seed, whisper_clip_length=clip_length)

    callbacks = list(callbacks or [])
    callbacks += [EpochCallback(splits["train"]), ValidationOnlyCallback(splits["test"])]
    if training_args.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    if training_args.freeze_encoder_steps:
        callbacks.append(FreezeEncoderCallback(training_args.freeze_encoder_steps))
    check_batch_norm_batch_size(model, training_args.per_device_train_batch_size)
    precise_bn_batches = resolve_precise_bn_batches(training_args.precise_bn_batches, model)
    if precise_bn_batches:
        logger.info(
            "Precise BatchNorm: statistics recomputed on %d clean training batches before each evaluation",
            precise_bn_batches,
        )
        clean_train = clean_training_view(
            splits["train"], feature_extractor, data_args, seed=training_args.seed, whisper_clip_length=clip_length
        )
        callbacks.append(
            PreciseBatchNormCallback(
                clean_train,
                SERDataCollator(feature_extractor, data_args.pad_to_multiple_of_samples),
                precise_bn_batches,
                training_args.per_device_train_batch_size,
                seed=training_args.seed,
            )
        )
    trainer = SERTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits.get("validation"),  # model selection and early stopping see validation speakers only
        data_collator=SERDataCollator(feature_extractor, data_args.pad_to_multiple_of_samples),
        processing_class=feature_extractor,
        compute_metrics=dimensional_compute_metrics(label_names) if data_args.dimensional else compute_metrics,
        callbacks=callbacks,
        batch_augmenter=batch_augmenter,
        length_cap=data_args.max_duration_seconds,
        length_bucket=data_args.pad_to_multiple_of_seconds or None,
    )

    check_selection_uses_validation(trainer, splits)

    train_result = trainer.train(resume_from_checkpoint=checkpoint_to_resume(training_args))
    trainer.save_model()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    prefixes = SPLIT_PREFIXES if evaluate_test else {"validation": SPLIT_PREFIXES["validation"]}
    results = evaluate_and_save(
        trainer, splits, label_names, training_args.output_dir, protocol=report.protocol, prefixes=prefixes
    )
    if trainer.is_world_process_zero():
        save_model_card(training_args.output_dir, repo_id=training_args.hub_model_id)
        if push_to_hub:
            repo_id = training_args.hub_model_id or Path(training_args.output_dir).absolute().name
            push_run(training_args.output_dir, repo_id, private=training_args.hub_private_repo)
    if report.skipped or report.notes:  # the end-of-run summary of data problems (all of them in data_report.json)
        logger.warning("Data problems (all in %s/data_report.json):\n%s", training_args.output_dir, report.problems())
    if trainer.is_world_process_zero():
        print_end_summary(results, report, splits, training_args.output_dir)
    return results


def main(argv: Optional[list] = None, callbacks: Optional[list] = None) -> dict:
    """Train from `RECIPE.yaml [--key value ...]`; `callbacks` are extra `TrainerCallback`s. Returns all metrics."""
    return train(*parse_args(argv), callbacks=callbacks)


class _CallableModule(type(sys)):
    """`hf_ser.train` is this script and the library function at once: importing the submodule rebinds the package
    attribute to the module, so the module itself calls `train` (a module may set its `__class__` to a ModuleType
    subclass since Python 3.5)."""

    def __call__(self, *args, **kwargs) -> dict:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    # As a script (`accelerate launch hf_ser/train.py ...`), user errors are the one line `hf-ser train` prints.
    from hf_ser.cli import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))
