"""Train a speech emotion recognition model from a recipe.

    python hf_ser/train.py recipes/demo.yaml [--key value ...]
    accelerate launch [--config_file accelerate_configs/X.yaml] hf_ser/train.py recipes/large.yaml [--key value ...]
    hf-ser train recipes/emodb.yaml --output_dir outputs/emodb

Parse -> seed -> data -> model -> Trainer -> train -> evaluate validation and test -> save.
"""

import os
import sys

# Run as a script, Python puts hf_ser/ first on sys.path, where data.py or metrics.py could shadow other modules.
_here = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _here:
    sys.path[0] = os.path.dirname(_here)

import logging  # noqa: E402
from typing import Optional  # noqa: E402

import transformers  # noqa: E402
from transformers import EarlyStoppingCallback, Trainer, set_seed  # noqa: E402
from transformers.trainer_utils import get_last_checkpoint  # noqa: E402

from hf_ser.arguments import parse_args  # noqa: E402
from hf_ser.collator import SERDataCollator  # noqa: E402
from hf_ser.data import attach_transforms, balanced_class_weights, build_corpus  # noqa: E402
from hf_ser.evaluation import evaluate_and_save  # noqa: E402
from hf_ser.metrics import compute_metrics  # noqa: E402
from hf_ser.models import backbone_config_of, build_feature_extractor, build_model  # noqa: E402

logger = logging.getLogger("hf_ser.train")


def main(argv: Optional[list] = None) -> dict:
    model_args, data_args, training_args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    set_seed(training_args.seed)

    splits, label_names, report = build_corpus(data_args, seed=training_args.seed)
    if training_args.process_index == 0:
        report.save(training_args.output_dir)
    logger.info("Data:\n%s", report.summary())

    class_weights = None
    if model_args.class_weights == "balanced":
        class_weights = balanced_class_weights(splits["train"], len(label_names))
    feature_extractor = build_feature_extractor(model_args, data_args.sampling_rate, backbone_config_of(model_args))
    model = build_model(model_args, label_names, class_weights)
    attach_transforms(splits, feature_extractor, data_args)

    callbacks = []
    if training_args.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training_args.early_stopping_patience))
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],  # model selection and early stopping see validation speakers only
        data_collator=SERDataCollator(feature_extractor),
        processing_class=feature_extractor,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )

    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is None and os.path.isdir(training_args.output_dir) and not training_args.overwrite_output_dir:
        checkpoint = get_last_checkpoint(training_args.output_dir)
        if checkpoint:
            logger.info("Resuming from %s", checkpoint)
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    results = evaluate_and_save(trainer, splits, label_names, training_args.output_dir, protocol=report.protocol)
    if report.skipped:
        logger.warning("%d item(s) were skipped; see %s/data_report.json", len(report.skipped), training_args.output_dir)
    return results


if __name__ == "__main__":
    main()
