"""Evaluation metrics (written from their definitions; no sklearn / scipy).

``scores`` are [N, C] (probabilities or logits: only the order matters except for accuracy's
argmax), ``targets`` [N, C] multi-hot (mixup-soft targets are thresholded at 0.5).
Semantics follow sklearn's ``average_precision_score`` / ``roc_auc_score`` per class, as the
reference's ``calculate_stats`` uses them; a class with no positive (or no negative) example
has an undefined AP/AUC and is reported as NaN and left out of the means.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def _sorted_by_score(score: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true/false positives at each distinct threshold, scores descending."""
    order = np.argsort(-score, kind="mergesort")
    s, y = score[order], target[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each tie group
    tp = np.cumsum(y)[last]
    fp = (1 + last) - tp
    return tp, fp, s[last]


def average_precision(score: np.ndarray, target: np.ndarray) -> float:
    """AP of one class: sum over thresholds of (recall step) x precision; NaN without positives."""
    y = (np.asarray(target) > 0.5).astype(np.float64)
    if y.sum() == 0:
        return float("nan")
    tp, fp, _ = _sorted_by_score(np.asarray(score, dtype=np.float64), y)
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(score: np.ndarray, target: np.ndarray) -> float:
    """Area under the ROC curve of one class (trapezoids; ties count one half); NaN if one-class."""
    y = (np.asarray(target) > 0.5).astype(np.float64)
    pos = y.sum()
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    tp, fp, _ = _sorted_by_score(np.asarray(score, dtype=np.float64), y)
    tpr = np.r_[0.0, tp / pos]
    fpr = np.r_[0.0, fp / neg]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def precision_recall_curve(score: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precisions, recalls) of one class as scikit-learn 0.24 (the reference's) returns them: from
    the highest threshold that reaches full recall up to the highest score, then the point (1, 0);
    recall decreasing. NaN recalls without positives."""
    y = (np.asarray(target) > 0.5).astype(np.float64)
    tp, fp, _ = _sorted_by_score(np.asarray(score, dtype=np.float64), y)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(tp / (tp + fp))
        recall = tp / tp[-1]
    full = int(np.searchsorted(tp, tp[-1]))  # first threshold with every positive above it
    return np.r_[precision[full::-1], 1.0], np.r_[recall[full::-1], 0.0]


def middle_point(curve: np.ndarray, every: int = 1000) -> float:
    """The reference's summary of a curve: keep every ``every``-th point, take the middle one."""
    kept = curve[::every]
    return float(kept[len(kept) // 2])


def d_prime(auc: float) -> float:
    """Sensitivity index from an AUC: ``sqrt(2) * Phi^-1(auc)`` (Phi the standard normal CDF)."""
    if not 0.0 <= auc <= 1.0 or math.isnan(auc):
        return float("nan")
    return float(math.sqrt(2.0) * torch.special.ndtri(torch.tensor(auc, dtype=torch.float64)))


def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of rows whose argmax score is the argmax target (single-label accuracy)."""
    return float(np.mean(np.argmax(scores, 1) == np.argmax(targets, 1)))


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def calculate_stats(scores: np.ndarray, targets: np.ndarray) -> dict:
    """Per-class AP and AUC plus ``mAP``, ``mAUC``, ``d_prime`` (of mAUC), ``acc`` and the
    reference's "Avg Precision" / "Avg Recall" (``mid_precision`` / ``mid_recall``: mean over
    classes of the middle point of the precision-recall curve sampled every 1000 points)."""
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    classes = range(targets.shape[1])
    ap = np.array([average_precision(scores[:, k], targets[:, k]) for k in classes])
    auc = np.array([roc_auc(scores[:, k], targets[:, k]) for k in classes])
    curves = [precision_recall_curve(scores[:, k], targets[:, k]) for k in classes]
    m_auc = _nanmean(auc)
    return {"mAP": _nanmean(ap), "mAUC": m_auc, "d_prime": d_prime(m_auc), "acc": accuracy(scores, targets),
            "mid_precision": _nanmean(np.array([middle_point(p) for p, _ in curves])),
            "mid_recall": _nanmean(np.array([middle_point(r) for _, r in curves])),
            "AP": ap.tolist(), "AUC": auc.tolist()}
