"""The outputs the reference's recipes read: per-epoch models, result.csv, weight averaging
(checked against an average computed here), wa_result.csv; the precision/recall summary; the
adaptive schedule."""
import json
import os

import numpy as np
import pytest
import torch

from ssast_fast.checkpoint import load_reference
from ssast_fast.cli import main
from ssast_fast.data.synth import make_tiny_dataset
from ssast_fast.train.metrics import calculate_stats, middle_point, precision_recall_curve

TINY = ["--model_size", "tiny", "--target_length", "32", "--fshape", "16", "--tshape", "16", "--fstride", "16",
        "--tstride", "16", "-w", "0", "--no-progress", "-b", "2", "--n-print-steps", "1", "--warmup", "False"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref_out")
    d = make_tiny_dataset(root / "ds", n_clips=2, n_class=3, seconds=0.3, n_val=4)
    from ssast_fast import ASTModel
    from ssast_fast.checkpoint import save_reference

    torch.manual_seed(0)
    d["pre"] = str(root / "pre.pth")
    save_reference(ASTModel(model_size="tiny", fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128,
                            input_tdim=32), d["pre"])
    return d


def _finetune(d, exp, *extra):
    assert main(["finetune", "--data-train", d["train"], "--data-val", d["val"], "--label-csv", d["labels"],
                 "--n_class", "3", "--pretrained_mdl_path", d["pre"], "--exp-dir", str(exp), *TINY, *extra]) == 0
    return str(exp)


def test_weight_average_result_csv_and_per_epoch_models(data, tmp_path):
    exp = _finetune(data, tmp_path / "wa", "--n-epochs", "3", "--wa", "True", "--wa_start", "1", "--wa_end", "3",
                    "--lrscheduler_start", "2", "--lrscheduler_step", "1", "--lrscheduler_decay", "0.5",
                    "--metrics", "acc", "--loss", "CE")
    models = os.path.join(exp, "models")
    per_epoch = [load_reference(os.path.join(models, f"audio_model.{e}.pth")) for e in (1, 2, 3)]
    wa = load_reference(os.path.join(models, "audio_model_wa.pth"))
    last = load_reference(os.path.join(models, "audio_model.pth"))
    assert set(wa) == set(per_epoch[0])
    moved = 0
    for k, v in wa.items():
        stack = torch.stack([sd[k].double() for sd in per_epoch])
        torch.testing.assert_close(v.double(), stack.mean(0).to(v.dtype).double(), rtol=0, atol=2e-7)
        assert torch.equal(per_epoch[2][k], last[k])  # epoch 3's file is the last model
        moved += not torch.equal(per_epoch[0][k], per_epoch[2][k])
    assert moved > 10  # the epochs really differ, so the average is not trivial

    # wa_result.csv = the averaged model scored on the validation set (here through `eval`)
    ev = str(tmp_path / "ev")
    assert main(["eval", "--checkpoint", os.path.join(models, "audio_model_wa.pth"), "--data-eval", data["val"],
                 "--label-csv", data["labels"], "--exp-dir", ev, *TINY[:12], "-w", "0", "--no-progress",
                 "--loss", "CE"]) == 0
    m = json.load(open(os.path.join(ev, "eval_metrics.json")))
    wa_result = np.loadtxt(os.path.join(exp, "wa_result.csv"))
    np.testing.assert_allclose(wa_result, [m["mAP"], m["mAUC"], m["mid_precision"], m["mid_recall"], m["d_prime"]],
                               rtol=1e-5)

    # result.csv: one row per epoch in the reference's columns
    result = np.loadtxt(os.path.join(exp, "result.csv"), delimiter=",")
    assert result.shape == (3, 10)
    rows = [json.loads(x) for x in open(os.path.join(exp, "metrics.jsonl"))]
    val = [r for r in rows if r["split"] == "val"]
    np.testing.assert_allclose(result[:, 0], [r["acc"] for r in val], rtol=1e-12)    # main metric: acc
    np.testing.assert_allclose(result[:, 1], [r["mAUC"] for r in val], rtol=1e-12)
    np.testing.assert_allclose(result[:, 4], [r["d_prime"] for r in val], rtol=1e-12)
    np.testing.assert_allclose(result[:, 9], [1e-3, 1e-3, 5e-4])                     # lr before the epoch's decay
    for e in (1, 2, 3):                                                                # mean training loss of the epoch
        train = [r["loss"] for r in rows if r["split"] == "train" and r["epoch"] == e]
        assert result[e - 1, 5] == pytest.approx(np.mean(train), rel=1e-6)
    assert result[0, 7] == result[0, 0] and result[0, 8] == result[0, 1]               # ensemble of one epoch
    assert np.isfinite(result[:, 6]).all() and (result[:, 6] > 0).all()               # loss on sigmoid outputs


def test_save_model_false_removes_the_averaged_epochs_but_the_first(data, tmp_path):
    exp = _finetune(data, tmp_path / "wa2", "--n-epochs", "3", "--wa", "True", "--wa_start", "2", "--wa_end", "3",
                    "--save_model", "False")
    names = sorted(os.listdir(os.path.join(exp, "models")))
    # without --epoch-models only the averaged window is written; --save_model False then keeps only its first
    assert names == ["audio_model.2.pth", "audio_model.pth", "audio_model_wa.pth", "best_audio_model.pth"]
    summary = json.load(open(os.path.join(exp, "summary.json")))
    assert set(summary["wa_val"]) == {"mAP", "mAUC", "d_prime", "acc", "loss"}


def test_adaptive_schedule_is_a_plateau_on_map(data, tmp_path):
    exp = _finetune(data, tmp_path / "adapt", "--n-epochs", "1", "--adaptschedule", "True", "--lr_patience", "3")
    ck = torch.load(os.path.join(exp, "checkpoints", "last.pt"), weights_only=True)
    sched = ck["scheduler"]
    assert sched["patience"] == 3 and sched["mode"] == "max" and sched["factor"] == 0.5
    val = [json.loads(x) for x in open(os.path.join(exp, "metrics.jsonl")) if '"val"' in x]
    assert sched["best"] == pytest.approx(val[-1]["mAP"])  # stepped with mAP


def test_precision_recall_curve_is_scikit_learn_0_24s():
    # scores 0.9 0.8 0.7 0.6 with labels 1 0 1 0: full recall first at 0.7; the curve runs from there up
    p, r = precision_recall_curve(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0]))
    np.testing.assert_allclose(p, [2 / 3, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(r, [1.0, 0.5, 0.5, 0.0])
    # ties form one threshold
    p, r = precision_recall_curve(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 0]))
    np.testing.assert_allclose(p, [0.5, 1.0])
    np.testing.assert_allclose(r, [1.0, 0.0])
    assert middle_point(np.arange(2500.0)) == 1000.0  # points 0, 1000, 2000 kept; the middle one
    assert middle_point(np.array([0.3, 0.1])) == 0.3


def test_stats_carry_the_reference_precision_and_recall_summary():
    rng = np.random.default_rng(0)
    targets = (rng.random((50, 4)) < 0.3).astype(float)
    scores = rng.random((50, 4))
    s = calculate_stats(scores, targets)
    mids = [precision_recall_curve(scores[:, k], targets[:, k]) for k in range(4)]
    assert s["mid_precision"] == pytest.approx(np.mean([p[0] for p, _ in mids]))  # < 1000 points: the first
    assert s["mid_recall"] == 1.0
