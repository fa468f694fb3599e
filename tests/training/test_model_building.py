"""What `build_model` makes of the recipe's model keys."""

import pytest

from hf_ser.arguments import ModelArguments
from hf_ser.training.model_building import build_model

LABELS = ["angry", "happy", "neutral", "sad"]


def test_ser_cnn_takes_its_sampling_rate_from_the_data():
    model = build_model(ModelArguments(model_type="ser-cnn"), LABELS, sampling_rate=8000)
    assert model.config.sampling_rate == 8000  # its mel filter bank is built for the audio it will get
    assert model.config.id2label == dict(enumerate(LABELS))


def test_a_conflicting_ser_cnn_sampling_rate_is_refused():
    with pytest.raises(ValueError, match="model_config sets sampling_rate=16000 but the data is resampled to 8000 Hz"):
        build_model(
            ModelArguments(model_type="ser-cnn", model_config={"sampling_rate": 16000}), LABELS, sampling_rate=8000
        )
