"""WA, UA and macro-F1 against values computed by hand from a known confusion matrix; CCC against a hand-computed
case and the numpy formula."""

import numpy as np
import pytest
from transformers import EvalPrediction

from hf_ser.evaluation.metrics import (
    compute_metrics,
    concordance_correlation,
    dimensional_compute_metrics,
    dimensional_scores,
    mean_std,
    ser_scores,
)

# 4 labels; class 3 never occurs in the references but is predicted twice.
REFERENCES = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
PREDICTIONS = [0, 0, 1, 3, 1, 0, 2, 2, 2, 3]
CONFUSION = [  # rows: true class, columns: predicted class
    [2, 1, 0, 1],
    [1, 1, 0, 0],
    [0, 0, 3, 1],
    [0, 0, 0, 0],
]


def test_scores_equal_the_hand_computed_values():
    scores = ser_scores(PREDICTIONS, REFERENCES, num_labels=4, confusion=True)
    assert scores["confusion_matrix"] == CONFUSION
    assert scores["wa"] == pytest.approx(6 / 10)  # correct / all clips
    # UA: mean recall over the classes present in the split (2/4, 1/2, 3/4); the absent class 3 does not count
    assert scores["ua"] == pytest.approx((2 / 4 + 1 / 2 + 3 / 4) / 3)
    # macro-F1 over the present classes, F1 = 2TP / (2TP + FP + FN): 4/7, 2/4, 6/7
    assert scores["macro_f1"] == pytest.approx((4 / 7 + 2 / 4 + 6 / 7) / 3)


def test_wa_and_ua_differ_when_classes_are_unbalanced():
    """A model that always says the majority class: WA is the majority's share, UA is chance over present classes."""
    references = [0] * 8 + [1] * 2
    scores = ser_scores([0] * 10, references, num_labels=2)
    assert (scores["wa"], scores["ua"]) == (pytest.approx(0.8), pytest.approx(0.5))


def test_trainer_metrics_take_the_argmax_of_the_logits():
    logits = np.eye(4)[PREDICTIONS] * 5.0 - 1.0  # the highest logit is the predicted class
    metrics = compute_metrics(EvalPrediction(predictions=logits, label_ids=np.array(REFERENCES)))
    assert metrics == pytest.approx(
        {"wa": 0.6, "ua": (2 / 4 + 1 / 2 + 3 / 4) / 3, "macro_f1": (4 / 7 + 2 / 4 + 6 / 7) / 3}
    )


def test_mean_and_sample_std_of_runs_and_the_undefined_std_of_one():
    assert mean_std([0.5, 0.7]) == (pytest.approx(0.6), pytest.approx(0.1414213562))
    assert mean_std([0.5]) == (0.5, None)
    with pytest.raises(ValueError, match="no values"):
        mean_std([])


# ------------------------------------------------------------------------------------------- CCC (dimensional emotion)


def test_ccc_equals_the_hand_computed_value():
    # predictions 1, 2, 3 for references 2, 4, 6: means 2 and 4, population variances 2/3 and 8/3, covariance 4/3;
    # CCC = 2 * 4/3 / (2/3 + 8/3 + (2 - 4)^2) = (8/3) / (22/3) = 4/11 (Pearson's r is 1: CCC also counts scale and bias)
    predictions = np.array([[1.0], [2.0], [3.0]])
    references = np.array([[2.0], [4.0], [6.0]])
    assert concordance_correlation(predictions, references)[0] == pytest.approx(4 / 11)
    assert concordance_correlation(references, references)[0] == pytest.approx(1.0)
    assert concordance_correlation(np.full((3, 1), 4.0), references)[0] == 0.0  # constant predictions


def test_ccc_equals_the_numpy_formula_per_dimension_and_for_stacks_of_resamples():
    rng = np.random.default_rng(0)
    references = rng.uniform(1, 5, (50, 3))
    predictions = 0.6 * references + rng.normal(0, 0.5, (50, 3)) + 0.3
    expected = []
    for d in range(3):
        p, r = predictions[:, d], references[:, d]
        covariance = np.cov(p, r, bias=True)[0, 1]
        expected.append(2 * covariance / (p.var() + r.var() + (p.mean() - r.mean()) ** 2))
    np.testing.assert_allclose(concordance_correlation(predictions, references), expected)
    stacked = concordance_correlation(np.stack([predictions, predictions[::-1]]), np.stack([references, references]))
    assert stacked.shape == (2, 3)
    np.testing.assert_allclose(stacked[0], expected)


def test_dimensional_scores_name_each_dimension_and_their_mean():
    references = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])
    predictions = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    scores = dimensional_scores(predictions, references, ["arousal", "valence"])
    assert scores == pytest.approx({"ccc_arousal": 1.0, "ccc_valence": 4 / 11, "ccc": (1 + 4 / 11) / 2})
    trainer_scores = dimensional_compute_metrics(["arousal", "valence"])(EvalPrediction(predictions, references))
    assert trainer_scores == scores


@pytest.mark.parametrize("family", ["wav2vec2-ser", "ser-cnn"])
def test_the_models_ccc_loss_is_one_minus_the_metrics_mean_ccc(family):
    import torch

    from hf_ser.models import modeling_ser_cnn, modeling_wav2vec2_ser

    module = modeling_wav2vec2_ser if family == "wav2vec2-ser" else modeling_ser_cnn
    rng = np.random.default_rng(1)
    references, predictions = rng.uniform(1, 5, (16, 3)), rng.uniform(1, 5, (16, 3))
    config = type("Config", (), {"problem_type": "regression", "dimensional_loss": "ccc", "class_weights": None})
    loss = module.ser_loss(torch.tensor(predictions), torch.tensor(references), config)
    expected = 1 - concordance_correlation(predictions, references).mean()
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    config.dimensional_loss = "mse"
    mse = module.ser_loss(torch.tensor(predictions), torch.tensor(references), config)
    assert float(mse) == pytest.approx(((predictions - references) ** 2).mean(), rel=1e-5)


def test_the_two_model_files_carry_the_same_loss_code():
    # each model file travels alone as remote code, so ser-cnn's holds a copy of wav2vec2-ser's loss functions
    import inspect

    from hf_ser.models import modeling_ser_cnn, modeling_wav2vec2_ser

    for name in ("concordance_correlation", "ser_loss"):
        original = inspect.getsource(getattr(modeling_wav2vec2_ser, name))
        assert inspect.getsource(getattr(modeling_ser_cnn, name)) == original
