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


@pytest.mark.parametrize("model_type", ["wav2vec2-ser", "ser-cnn"])
def test_a_new_dimensional_model_starts_at_the_training_means(model_type):
    import json

    import torch
    from conftest import TINY_WAV2VEC2

    from hf_ser.training.model_building import start_at_training_means

    encoder = {} if model_type == "ser-cnn" else {"backbone_config": json.dumps(TINY_WAV2VEC2)}
    model_args = ModelArguments(model_type=model_type, head_hidden_sizes=[8], head_batch_norm=False, **encoder)
    model = build_model(model_args, ["arousal", "valence"], dimensional=True).eval()
    assert (model.config.problem_type, model.config.num_labels) == ("regression", 2)
    start_at_training_means(model, [3.0, 2.5])
    output_layer = model.head[-1] if model_type == "wav2vec2-ser" else model.classifier
    assert output_layer.bias.tolist() == [3.0, 2.5]
    with torch.no_grad():  # zero weights in the last layer: the outputs are the means themselves
        output_layer.weight.zero_()
        assert model(torch.randn(2, 8000)).logits.tolist() == [[3.0, 2.5], [3.0, 2.5]]
