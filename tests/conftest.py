"""Shared fixtures: tiny real architectures built from configs and small generated corpora. No network."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
EMODB_DIR = REPO_ROOT.parent / "shared" / "data" / "emodb"

# A wav2vec2-architecture encoder small enough to train in seconds on a CPU (layer-norm flavour, takes masks).
TINY_WAV2VEC2 = {
    "model_type": "wav2vec2",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16, 16, 16],
    "conv_stride": [5, 4, 4],
    "conv_kernel": [10, 4, 4],
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "mask_time_prob": 0.0,
}


@pytest.fixture
def tiny_backbone_config():
    return dict(TINY_WAV2VEC2)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """An audiofolder of the generated demo signals: 4 speakers x 4 emotions x 3 clips."""
    from hf_ser.data.demo_corpus import generate_demo_corpus

    return generate_demo_corpus(tmp_path_factory.mktemp("corpus") / "demo", speakers=4, per_emotion=3, seed=1)


TINY_DATA_ARGV = [
    "--dataset",
    "audiofolder",
    "--speaker_pattern",
    r"spk(?P<speaker>\d+)_",
    "--validation_speakers",
    "03",
    "--test_speakers",
    "04",
]


TINY_SPEAKER_PATTERN = r"spk(?P<speaker>\d+)_"


def corpus_args(corpus: Path, **kwargs):
    """`DataArguments` of an audiofolder corpus whose file names carry the speaker (`spk03_...`)."""
    from hf_ser.arguments import DataArguments

    return DataArguments(dataset="audiofolder", data_dir=str(corpus), speaker_pattern=TINY_SPEAKER_PATTERN, **kwargs)


def tiny_argv(corpus: Path, output_dir: Path) -> list:
    """Command-line arguments of a complete, seconds-long training run on the tiny corpus into `output_dir`."""
    import json

    return [
        *TINY_DATA_ARGV,
        "--data_dir",
        str(corpus),
        "--backbone_config",
        json.dumps(TINY_WAV2VEC2),
        "--head_hidden_sizes",
        "16",
        "8",
        "--max_duration_seconds",
        "1.0",
        "--output_dir",
        str(output_dir),
        "--num_train_epochs",
        "2",
        "--per_device_train_batch_size",
        "8",
        "--per_device_eval_batch_size",
        "8",
        "--learning_rate",
        "1e-3",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--seed",
        "7",
    ]


@pytest.fixture
def tiny_train_argv(tiny_corpus, tmp_path):
    return tiny_argv(tiny_corpus, tmp_path / "run")


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus, tmp_path_factory) -> Path:
    """One finished `tiny_train_argv` run, shared by the tests that only read its folder (do not write into it).
    It is trained as a user runs it, `python hf_ser/train.py ...` in its own process; what that printed (stdout and
    stderr together) is in `console.txt` next to the run folder."""
    import subprocess
    import sys

    run_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "hf_ser" / "train.py"), *tiny_argv(tiny_corpus, run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    (run_dir.parent / "console.txt").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-3000:]
    return run_dir


def requires_emodb():
    return pytest.mark.skipif(
        not (EMODB_DIR / "wav").is_dir(), reason=f"EmoDB corpus not found at {EMODB_DIR} (CI provides it)"
    )


TINY_LABELS = ["angry", "happy", "neutral", "sad"]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny Wav2Vec2SER (random weights, the tiny corpus's labels) with its feature extractor: a folder that
    loads like a finished run's, without training."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor

    from hf_ser import Wav2Vec2SER, Wav2Vec2SERConfig

    torch.manual_seed(0)
    config = Wav2Vec2SERConfig(
        backbone_config=dict(TINY_WAV2VEC2),
        head_hidden_sizes=[16, 8],
        id2label=dict(enumerate(TINY_LABELS)),
        label2id={label: i for i, label in enumerate(TINY_LABELS)},
    )
    model_dir = tmp_path_factory.mktemp("tiny_model") / "model"
    Wav2Vec2SER(config).eval().save_pretrained(model_dir)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def cnn_model_dir(tmp_path_factory) -> Path:
    """A saved small SERCNN that averages 1 s segments (0.5 s hop) in evaluation, as the paper's protocol does."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor

    from hf_ser import SERCNN, SERCNNConfig

    torch.manual_seed(0)
    config = SERCNNConfig(
        block_channels=[8, 16],
        pool_blocks=[0],
        attention_heads=2,
        attention_hidden=16,
        segment_seconds=1.0,
        segment_hop_seconds=0.5,
        id2label=dict(enumerate(TINY_LABELS)),
        label2id={label: i for i, label in enumerate(TINY_LABELS)},
    )
    model = SERCNN(config)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so evaluation mode differs from a fresh model
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    model_dir = tmp_path_factory.mktemp("cnn") / "model"
    model.eval().save_pretrained(model_dir)
    Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True).save_pretrained(model_dir)
    return model_dir


_BLOCK_HF_SER = """
import importlib.abc, sys
class BlockHfSer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hf_ser" or name.startswith("hf_ser."):
            raise ImportError("hf_ser is not importable in this process")
sys.meta_path.insert(0, BlockHfSer())
"""


def run_without_hf_ser(script: str, cwd) -> str:
    """Run `script` in a fresh Python where importing hf_ser raises (a user without hf-ser); returns its last
    stdout line and fails the test with the child's stderr if it exits non-zero."""
    import subprocess
    import sys
    import textwrap

    result = subprocess.run(
        [sys.executable, "-c", _BLOCK_HF_SER + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]
