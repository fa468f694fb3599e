"""Model files that travel with every checkpoint (configuration_*/modeling_* pairs): they import only torch,
transformers and each other (relative imports), never the rest of hf_ser.

Importing this package registers both architectures with the Auto classes, so saved checkpoints load with
`AutoModel` / `AutoModelForAudioClassification` / `pipeline` without remote code.
"""

from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

from .configuration_ser_cnn import SERCNNConfig
from .configuration_wav2vec2_ser import Wav2Vec2SERConfig
from .modeling_ser_cnn import SERCNN
from .modeling_wav2vec2_ser import Wav2Vec2SER

ARCHITECTURES = [(Wav2Vec2SERConfig, Wav2Vec2SER), (SERCNNConfig, SERCNN)]

for _config_class, _model_class in ARCHITECTURES:
    AutoConfig.register(_config_class.model_type, _config_class, exist_ok=True)
    AutoModel.register(_config_class, _model_class, exist_ok=True)
    AutoModelForAudioClassification.register(_config_class, _model_class, exist_ok=True)
    # Saved checkpoints carry the two model files and an `auto_map`, so they also load without hf_ser installed.
    _config_class.register_for_auto_class()
    _model_class.register_for_auto_class("AutoModelForAudioClassification")
