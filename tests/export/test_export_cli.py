"""``ssast-fast export``: settings from a run folder's config.json, from a training checkpoint's
stored config, or from flags for an official .pth; the check it runs; its clear errors."""
import csv
import json
import os

import pytest
import torch

from ssast_fast.checkpoint import save_reference, save_training_checkpoint
from ssast_fast.cli import main
from ssast_fast.export import from_transformers, read_onnx_metadata, read_transformers_folder


def _run_config(model, task, **extra):
    """The settings a fine-tuning run writes to config.json (a subset, plus unrelated keys)."""
    return {"task": task, "fshape": model.fshape, "tshape": model.tshape, "fstride": model.fstride,
            "tstride": model.tstride, "target_length": model.input_tdim, "num_mel_bins": model.input_fdim,
            "model_size": model.model_size, "n_class": model.mlp_head[1].out_features, "dataset_mean": -6.5,
            "dataset_std": 5.5, "sample_rate": 16000, "loss": "CE", "lr": 1e-4, "exp_dir": "x", **extra}


def _labels_csv(path, n):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        for i in range(n):
            w.writerow([i, f"/m/{i}", f"sound {i}"])
    return str(path)


def test_run_folder_to_onnx(make_model, export_deps, tmp_path, capsys):
    model, task = make_model("avgtok_frame_1cls", n_class=3)
    run = tmp_path / "run"
    os.makedirs(run / "models")
    save_reference(model, run / "models" / "best_audio_model.pth")
    cfg = _run_config(model, task, label_csv=_labels_csv(tmp_path / "labels.csv", 3))
    (run / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(run / "models" / "best_audio_model.pth"), "--format", "onnx",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "settings from" in printed and "config.json" in printed and ": ok" in printed
    meta = read_onnx_metadata(out)
    assert meta["labels"] == ["sound 0", "sound 1", "sound 2"] and meta["task"] == task
    assert meta["dataset_mean"] == -6.5 and meta["problem_type"] == "single_label_classification"


def test_training_checkpoint_to_transformers(make_model, export_deps, tmp_path, capsys):
    model, task = make_model("cls_patch_2cls", n_class=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    ckpt = tmp_path / "checkpoints" / "best.pt"
    save_training_checkpoint(ckpt, model=model, optimizer=opt, scheduler=sched, step=3, epoch=1,
                             config=_run_config(model, task, loss="BCE"))
    out = tmp_path / "hf"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "transformers", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "plain folder: the classifier LayerNorm eps is 1e-06 (SSAST: 1e-05)" in printed and ": ok" in printed
    assert not (out / "modeling_ssast.py").exists()  # ft_cls, 2 cls tokens, square: plain AST
    folder = read_transformers_folder(out)
    assert folder.task == "ft_cls" and folder.config["problem_type"] == "multi_label_classification"
    assert (folder.dataset_mean, folder.dataset_std) == (-6.5, 5.5)
    back = from_transformers(out)
    for k, v in model.state_dict().items():
        if not k.startswith(("v.head.", "v.head_dist.")):
            assert torch.equal(back.state_dict()[k], v), k


def test_official_pth_needs_flags(make_model, export_deps, tmp_path, capsys):
    model, task = make_model("avgtok_patch_2cls", n_class=3)
    os.makedirs(tmp_path / "a" / "b")
    pth = tmp_path / "a" / "b" / "audio_model.pth"
    save_reference(model, pth)
    out = tmp_path / "hf"
    base = ["export", "--checkpoint", str(pth), "--format", "transformers", "--out", str(out)]
    with pytest.raises(ValueError, match=r"missing: --task, --fstride, --tstride, --target_length, --num_mel_bins, "
                                         r"--dataset_mean, --dataset_std"):
        main(base)
    flags = ["--task", task, "--fstride", str(model.fstride), "--tstride", str(model.tstride), "--target_length",
             str(model.input_tdim), "--num_mel_bins", str(model.input_fdim), "--dataset_mean", "-4",
             "--dataset_std", "4"]
    bad = flags.copy()
    bad[bad.index("--tstride") + 1] = str(model.tstride + 3)
    with pytest.raises(ValueError, match="the geometry .* is not the model's"):
        main(base + bad)
    assert main(base + flags + ["--code", "custom"]) == 0
    assert "settings from flags" in capsys.readouterr().out
    assert read_transformers_folder(out).task == task


def test_cli_clear_errors(make_model, tmp_path):
    from ssast_fast import ASTModel

    pre = ASTModel(fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=32, input_tdim=32, model_size="t2")
    make_model("avgtok_patch_2cls")  # registers the test sizes
    save_reference(pre, tmp_path / "pre.pth")
    flags = ["--task", "ft_avgtok", "--fstride", "16", "--tstride", "16", "--target_length", "32",
             "--num_mel_bins", "32", "--dataset_mean", "0", "--dataset_std", "1"]
    with pytest.raises(ValueError, match="pretraining model"):
        main(["export", "--checkpoint", str(tmp_path / "pre.pth"), "--format", "onnx", "--out", "x.onnx"] + flags)
    with pytest.raises(ValueError, match="checkpoint not found"):
        main(["export", "--checkpoint", str(tmp_path / "none.pth"), "--format", "onnx", "--out", "x.onnx"])

    class Payload:  # a pickled object is never loaded
        def __reduce__(self):
            return (os.system, ("echo unsafe",))

    torch.save({"v.pos_embed": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="refused.*posix.system"):
        main(["export", "--checkpoint", str(tmp_path / "evil.pth"), "--format", "onnx", "--out", "x.onnx"] + flags)
