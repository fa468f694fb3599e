"""WA, UA and macro-F1 against values computed by hand from a known confusion matrix."""

import numpy as np
import pytest
from transformers import EvalPrediction

from hf_ser.evaluation.metrics import compute_metrics, mean_std, ser_scores

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
