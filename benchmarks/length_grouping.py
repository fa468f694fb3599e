"""Padding with length-grouped vs random training batches on hf-ser's real data pipeline.

The generated test corpus (4 speakers x 4 emotions x 3 clips, 1.5-3 s; speakers 01-02 train), clips uncropped,
batches of `--batch-size`; the Trainer's sampler for `train_sampling_strategy` picks the batches and hf-ser's collator
pads them. Prints the padded samples (at 16 kHz) per seed and in total.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/length_grouping.py --batch-size 2 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from transformers import Wav2Vec2FeatureExtractor

from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.arguments import DataArguments, SERTrainingArguments
from hf_ser.data.collator import SERDataCollator
from hf_ser.data.dataset import build_corpus
from hf_ser.data.demo_corpus import generate_demo_corpus
from hf_ser.data.transforms import attach_transforms
from hf_ser.training.trainer import SERTrainer

TINY = {
    "model_type": "wav2vec2",
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16, 16],
    "conv_stride": [5, 4],
    "conv_kernel": [10, 4],
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


def padded_samples(
    corpus: Path, strategy: str, batch_size: int, seed: int, output_dir: str, grouping: str = "epoch"
) -> int:
    data_args = DataArguments(
        dataset="audiofolder",
        data_dir=str(corpus),
        speaker_pattern=r"spk(?P<speaker>\d+)_",
        validation_speakers=["03"],
        test_speakers=["04"],
        max_duration_seconds=10.0,
    )
    splits, labels, _ = build_corpus(data_args)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True)
    attach_transforms(splits, extractor, data_args)
    args = SERTrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        report_to="none",
        eval_strategy="no",
        load_best_model_at_end=False,
        seed=seed,
        train_sampling_strategy=strategy,
        length_grouping=grouping,
        dataloader_pin_memory=False,
    )
    model = Wav2Vec2SER(Wav2Vec2SERConfig(backbone_config=TINY, num_labels=len(labels)))  # the Trainer needs one
    trainer = SERTrainer(
        model=model, args=args, train_dataset=splits["train"], data_collator=SERDataCollator(extractor)
    )
    return sum(int((batch["attention_mask"] == 0).sum()) for batch in trainer.get_train_dataloader())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = generate_demo_corpus(Path(tmp) / "corpus", speakers=4, per_emotion=3, seed=1)
        for strategy, grouping in (("group_by_length", "epoch"), ("group_by_length", "megabatch"), ("random", "-")):
            grouping_key = grouping if grouping != "-" else "epoch"  # ignored by random batches
            counts = [padded_samples(corpus, strategy, options.batch_size, s, tmp, grouping_key) for s in options.seeds]
            name = f"{strategy} ({grouping})" if grouping != "-" else strategy
            print(f"{name:>28}: padded samples per seed {counts}, total {sum(counts):,}")


if __name__ == "__main__":
    main()
