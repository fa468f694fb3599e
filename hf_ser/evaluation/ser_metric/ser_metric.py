"""Speech emotion recognition metrics as an `evaluate` module that loads by path, offline.

WA (weighted accuracy: plain accuracy), UA (unweighted accuracy: mean per-class recall, i.e. balanced accuracy),
macro-F1 and the confusion matrix (rows: true class, columns: predicted class). scikit-learn does the arithmetic.
UA and macro-F1 average over the classes present in the references: the recall of a class without items is undefined
(0/0), as in scikit-learn's balanced accuracy; hf-ser names such classes next to the scores.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): true class ids.
    num_labels (`int`, optional): size of the label set, so the confusion matrix has a row for every class even when
        a class is absent from this split. UA and macro-F1 average over the classes present in `references`.
    return_confusion_matrix (`bool`, optional, defaults to False).
Returns:
    wa, ua, macro_f1 (floats in [0, 1]) and, when asked, confusion_matrix (list of lists of ints).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SERMetric(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_labels=None, return_confusion_matrix=False):
        present = sorted(set(references))
        results = {
            "wa": float(accuracy_score(references, predictions)),
            # balanced accuracy over the classes present, without its warning for predicted classes not present
            "ua": float(recall_score(references, predictions, labels=present, average="macro", zero_division=0)),
            "macro_f1": float(f1_score(references, predictions, labels=present, average="macro", zero_division=0)),
        }
        if return_confusion_matrix:
            labels = list(range(num_labels)) if num_labels else sorted(set(references) | set(predictions))
            results["confusion_matrix"] = confusion_matrix(references, predictions, labels=labels).tolist()
        return results
