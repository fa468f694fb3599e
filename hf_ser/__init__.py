"""hf-ser: train, compare and publish speech emotion recognition models with Hugging Face tools.

Importing hf_ser registers its architectures with the Auto classes, so saved checkpoints load with
`AutoModel.from_pretrained`, `AutoModelForAudioClassification.from_pretrained` and `pipeline("audio-classification")`
without remote code. `hf_ser.load_audio(path, sampling_rate=...)` decodes any audio file as training does (soundfile +
soxr, mono): feed it to the pipeline as `{"raw": audio, "sampling_rate": rate}` at the model's rate, since the pipeline
itself reads files only through FFmpeg and resamples only with torchaudio.
"""

from hf_ser.data.audio import load_audio
from hf_ser.inference.predict import predict_timeline
from hf_ser.models import SERCNN, SERCNNConfig, Wav2Vec2SER, Wav2Vec2SERConfig  # importing registers them

__version__ = "0.1.0"

__all__ = [
    "Wav2Vec2SERConfig",
    "Wav2Vec2SER",
    "SERCNNConfig",
    "SERCNN",
    "load_audio",
    "predict_timeline",
    "train",
    "__version__",
]


def __getattr__(name: str):
    # `hf_ser.train(model_args, data_args, training_args)`: the training stack (Trainer, datasets, PEFT) is imported
    # on first use, so `import hf_ser` stays light for inference. The module is callable (hf_ser/train.py).
    if name == "train":
        import hf_ser.train as train_module

        return train_module
    raise AttributeError(f"module 'hf_ser' has no attribute {name!r}")
