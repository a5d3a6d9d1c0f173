"""Metrics on inputs whose answers are known by hand."""
import math

import numpy as np
import pytest

from ssast_fast.train.metrics import accuracy, average_precision, calculate_stats, d_prime, roc_auc


def test_average_precision_known():
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.1, 0.2, 0.3]), np.array([0, 0, 1])) == 1.0
    # positive ranked last among 4: precision at its recall step is 1/4
    assert average_precision(np.array([0.4, 0.3, 0.2, 0.1]), np.array([0, 0, 0, 1])) == pytest.approx(0.25)
    # a tie between one positive and one negative counts as one threshold: precision 1/2
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    assert math.isnan(average_precision(np.array([0.5, 0.1]), np.array([0, 0])))


def test_roc_auc_known():
    assert roc_auc(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx(0.75)
    assert roc_auc(np.array([0.9, 0.1]), np.array([1, 0])) == 1.0
    assert roc_auc(np.array([0.1, 0.9]), np.array([1, 0])) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5]), np.array([1, 0, 1])) == pytest.approx(0.5)
    # Mann-Whitney: pairs (pos > neg) + 0.5 ties over pos * neg
    s, y = np.array([0.3, 0.3, 0.2, 0.8, 0.1]), np.array([1, 0, 1, 0, 1])
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a in s[y == 1] for b in s[y == 0]]
    assert roc_auc(s, y) == pytest.approx(np.mean(pairs))
    assert math.isnan(roc_auc(np.array([0.2, 0.3]), np.array([1, 1])))


def test_d_prime_known():
    assert d_prime(0.5) == pytest.approx(0.0, abs=1e-12)
    # AUC = Phi(d / sqrt 2): d = 1 <-> AUC = Phi(0.7071...) = 0.76024993890652...
    assert d_prime(0.7602499389065233) == pytest.approx(1.0, abs=1e-9)
    assert d_prime(1 - 0.7602499389065233) == pytest.approx(-1.0, abs=1e-9)
    assert d_prime(1.0) == math.inf


def test_accuracy_and_stats():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]])
    assert accuracy(scores, targets) == 0.75
    st = calculate_stats(scores, targets)
    assert st["acc"] == 0.75
    assert st["AUC"][2] == 1.0 and st["AP"][2] == 1.0
    assert st["AUC"][0] == pytest.approx(1.0)  # class 0: pos 0.9 above negatives 0.2, 0.6, 0.1
    assert st["AP"][1] == 1.0  # class 1 column 0.1, 0.7, 0.3, 0.2: its positives (0.7, 0.3) rank 1st and 2nd
    assert st["AUC"][1] == 1.0
    assert st["mAUC"] == pytest.approx(np.mean(st["AUC"]))
    assert st["mAP"] == pytest.approx(np.mean(st["AP"]))
    assert st["d_prime"] == pytest.approx(d_prime(st["mAUC"]))


def test_stats_skip_undefined_classes():
    st = calculate_stats(np.array([[0.9, 0.2], [0.1, 0.3]]), np.array([[1, 0], [0, 0]]))
    assert math.isnan(st["AP"][1]) and math.isnan(st["AUC"][1])
    assert st["mAP"] == 1.0 and st["mAUC"] == 1.0


def test_check_finite_raises_on_diverged_running_sums():
    import pytest
    import torch

    from ssast_fast.train.state import check_finite

    check_finite(torch.tensor([1.0, 2.0], dtype=torch.float64), 3)
    check_finite(0.0, 0)
    with pytest.raises(FloatingPointError, match="step 7"):
        check_finite(torch.tensor([1.0, float("nan")]), 7)
    with pytest.raises(FloatingPointError):
        check_finite(float("inf"), 1)
