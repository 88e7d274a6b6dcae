"""The metrics of one head over labelled items, from scikit-learn: accuracy, macro-F1, per class, confusion matrix."""
from __future__ import annotations

import numpy as np


def evaluate_head(y_true: np.ndarray, y_pred: np.ndarray, vocab: list[str]) -> dict:
    """scikit-learn metrics for one head over rows with a known label: accuracy, macro-F1, per class, confusion matrix."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    known = y_true >= 0
    t, p = y_true[known], y_pred[known]
    labels = list(range(len(vocab)))
    if not len(t):
        return {"n": 0, "accuracy": float("nan"), "macro_f1": float("nan"), "per_class": [], "confusion": [], "labels": vocab}
    prec, rec, f1, support = precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    present = sorted(set(t.tolist()))
    return {
        "n": int(len(t)),
        "accuracy": float(accuracy_score(t, p)),
        # macro over the classes that occur in the truth, so absent classes do not count as zero
        "macro_f1": float(f1_score(t, p, labels=present, average="macro", zero_division=0)),
        "per_class": [{"class": vocab[i], "precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                       "support": int(support[i])} for i in labels],
        "confusion": confusion_matrix(t, p, labels=labels).tolist(),
        "labels": vocab,
    }
