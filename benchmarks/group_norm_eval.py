"""What encoding group-norm batches clip by clip costs, and what it fixes, on one EmoDB validation pass.

Model: the published facebook/wav2vec2-base-960h architecture (../shared/checkpoints: group-norm conv front end,
768 x 12 layers; random weights, so the numbers are about cost and consistency, not accuracy) with the seed's head.
Data: EmoDB's validation speakers of recipes/emodb.yaml (09 and 10), whole clips, through hf-ser's own transform and
collator. Paths, in one run:

- `batched` (hf-ser before): padded batches straight through the encoder, whose group norm normalises over the
  padding too;
- `per_clip` (hf-ser now): `Wav2Vec2SER` encodes a padded batch clip by clip, unpadded.

Each path runs at eval batch 8 and batch 1 (batch 1 has no padding, so it is the clip's own result); reported: seconds
per pass, and the share of clips whose predicted class at batch 8 differs from batch 1.

    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/group_norm_eval.py --json benchmarks/results/group_norm_eval.json
"""

from __future__ import annotations

import argparse
import time

import torch
import transformers
from common import REPO_ROOT, load_average, machine_description, markdown_table, write_report
from torch.utils.data import DataLoader

from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig
from hf_ser.arguments import DataArguments
from hf_ser.data.collator import SERDataCollator
from hf_ser.data.dataset import build_corpus
from hf_ser.data.transforms import attach_transforms

CHECKPOINT = REPO_ROOT.parent / "shared" / "checkpoints" / "facebook__wav2vec2-base-960h"
EMODB = REPO_ROOT.parent / "shared" / "data" / "emodb"


def logits_of(model, dataset, collator, batch_size: int) -> torch.Tensor:
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collator)
    with torch.no_grad():
        return torch.cat([model(**{k: v for k, v in batch.items() if k != "labels"}).logits for batch in loader])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--limit", type=int, default=None, help="only the first N validation clips (a quick look)")
    args = parser.parse_args()

    transformers.logging.set_verbosity_error()
    data_args = DataArguments(
        dataset="emodb", data_dir=str(EMODB), validation_speakers=["09", "10"], test_speakers=["03", "08"]
    )
    splits, label_names, _ = build_corpus(data_args, seed=42)
    validation = splits["validation"] if args.limit is None else splits["validation"].select(range(args.limit))
    seconds = float(sum(validation["duration"]))
    extractor = transformers.AutoFeatureExtractor.from_pretrained(CHECKPOINT)
    extractor.return_attention_mask = True  # as hf-ser saves a backbone's extractor
    attach_transforms({"validation": validation}, extractor, data_args, training=False)
    collator = SERDataCollator(extractor)

    torch.manual_seed(0)
    backbone = transformers.AutoConfig.from_pretrained(CHECKPOINT)
    model = Wav2Vec2SER(Wav2Vec2SERConfig(backbone_config=backbone, num_labels=len(label_names))).eval()

    results = {}
    encode_alone = Wav2Vec2SER._encodes_clips_alone
    for path in ("batched", "per_clip"):
        if path == "batched":  # the encoder sees the padded batch, as before
            Wav2Vec2SER._encodes_clips_alone = lambda self, mask: False
        else:
            Wav2Vec2SER._encodes_clips_alone = encode_alone
        timings, logits = {}, {}
        for batch_size in (8, 1):
            start = time.perf_counter()
            logits[batch_size] = logits_of(model, validation, collator, batch_size)
            timings[batch_size] = time.perf_counter() - start
        changed = (logits[8].argmax(-1) != logits[1].argmax(-1)).float().mean().item()
        results[path] = {
            "seconds_batch8": timings[8],
            "seconds_batch1": timings[1],
            "max_abs_logit_difference_batch8_vs_1": (logits[8] - logits[1]).abs().max().item(),
            "predictions_changed_batch8_vs_1": changed,
        }
    Wav2Vec2SER._encodes_clips_alone = encode_alone

    rows = [
        [
            path,
            f"{r['seconds_batch8']:.1f}",
            f"{r['seconds_batch1']:.1f}",
            f"{r['max_abs_logit_difference_batch8_vs_1']:.2e}",
            f"{100 * r['predictions_changed_batch8_vs_1']:.1f} %",
        ]
        for path, r in results.items()
    ]
    print(f"{len(validation)} EmoDB validation clips ({seconds:.0f} s of audio), wav2vec2-base-960h architecture")
    print(
        markdown_table(
            [
                "path",
                "s / pass (batch 8)",
                "s / pass (batch 1)",
                "max |logit diff| 8 vs 1",
                "predictions changed 8 vs 1",
            ],
            rows,
        )
    )
    print(f"load average: {load_average()}")
    write_report(
        args.json,
        {
            "clips": len(validation),
            "audio_seconds": seconds,
            "results": results,
            "load_average": load_average(),
            "machine": machine_description(),
        },
    )


if __name__ == "__main__":
    main()
