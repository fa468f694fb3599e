"""hf-ser: train, compare and publish speech emotion recognition models with Hugging Face tools.

Importing hf_ser registers its architectures with the Auto classes, so saved checkpoints load with
`AutoModel.from_pretrained`, `AutoModelForAudioClassification.from_pretrained` and `pipeline("audio-classification")`
without remote code.
"""

from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

from hf_ser.models.configuration_ser_cnn import SERCNNConfig
from hf_ser.models.configuration_wav2vec2_ser import Wav2Vec2SERConfig
from hf_ser.models.modeling_ser_cnn import SERCNN
from hf_ser.models.modeling_wav2vec2_ser import Wav2Vec2SER

__version__ = "0.1.0"

ARCHITECTURES = [(Wav2Vec2SERConfig, Wav2Vec2SER), (SERCNNConfig, SERCNN)]

for _config_class, _model_class in ARCHITECTURES:
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModel.register(_config_class, _model_class, exist_ok=True)
    AutoModelForAudioClassification.register(_config_class, _model_class, exist_ok=True)
    # Saved checkpoints carry the two model files and an `auto_map`, so they also load without hf_ser installed.
    _config_class.register_for_auto_class()
    _model_class.register_for_auto_class("AutoModelForAudioClassification")

from hf_ser.inference.predict import predict_timeline  # noqa: E402  (after the registration it relies on)

__all__ = ["Wav2Vec2SERConfig", "Wav2Vec2SER", "SERCNNConfig", "SERCNN", "predict_timeline", "__version__"]
