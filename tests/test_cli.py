"""CLI: help text for every flag, presets, and a small end-to-end pretrain -> finetune -> eval -> embed."""
import json
import math
import os

import numpy as np
import pytest
import torch

from ssast_fast.cli import build_parser, main
from ssast_fast.cli.train import PRESETS, apply_preset
from ssast_fast.data.synth import make_tiny_dataset

COMMANDS = ("smoke", "run", "pretrain", "finetune", "eval", "embed")


def _sub(name):
    return build_parser()._subparsers._group_actions[0].choices[name]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_flag_has_help(cmd, capsys):
    for action in _sub(cmd)._actions:
        assert action.help, f"{cmd} {action.option_strings} has no help"
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert "usage: ssast-fast " + cmd in capsys.readouterr().out


def test_reference_flag_names_present():
    opts = {o for a in _sub("finetune")._actions for o in a.option_strings}
    for flag in ("--data-train", "--data-val", "--data-eval", "--label-csv", "--n_class", "--dataset_mean",
                 "--dataset_std", "--target_length", "--num_mel_bins", "--fshape", "--tshape", "--fstride",
                 "--tstride", "--model_size", "--task", "--lr", "--batch-size", "--n-epochs", "--warmup",
                 "--freqm", "--timem", "--mixup", "--noise", "--head_lr", "--lrscheduler_start",
                 "--lrscheduler_step", "--lrscheduler_decay", "--loss", "--metrics", "--pretrained_mdl_path",
                 "--exp-dir", "--num-workers", "--precision", "--compile", "--attn-backend", "--seed", "--resume",
                 "--device"):
        assert flag in opts, flag
    popts = {o for a in _sub("pretrain")._actions for o in a.option_strings}
    for flag in ("--mask_patch", "--epoch_iter", "--lr_patience", "--mask-mode", "--shared-mask"):
        assert flag in popts, flag


# The reference's run.py (a1a3eec): every argument and its default, as its parser defines them.
RUN_PY = {"--data-train": None, "--data-val": None, "--data-eval": None, "--label-csv": "", "--n_class": 527,
          "--dataset": None, "--dataset_mean": None, "--dataset_std": None, "--target_length": None,
          "--num_mel_bins": 128, "--exp-dir": "", "--lr": 0.001, "--learning-rate": 0.001, "--warmup": True,
          "--optim": "adam", "-b": 12, "--batch-size": 12, "-w": 16, "--num-workers": 16, "--n-epochs": 1,
          "--lr_patience": 1, "--adaptschedule": False, "--n-print-steps": 100, "--save_model": None, "--freqm": 0,
          "--timem": 0, "--mixup": 0, "--bal": None, "--fstride": None, "--tstride": None, "--fshape": None,
          "--tshape": None, "--model_size": "base384", "--task": "ft_cls", "--mask_patch": 400, "--cluster_factor": 3,
          "--epoch_iter": 2000, "--pretrained_mdl_path": None, "--head_lr": 1, "--noise": None, "--metrics": "mAP",
          "--lrscheduler_start": 10, "--lrscheduler_step": 5, "--lrscheduler_decay": 0.5, "--wa": None,
          "--wa_start": 16, "--wa_end": 30, "--loss": "BCE"}


def _defaults(cmd):
    return {o: a.default for a in _sub(cmd)._actions for o in a.option_strings}


def test_run_takes_every_run_py_argument_with_its_default():
    got = _defaults("run")
    for flag, default in RUN_PY.items():
        assert flag in got, flag
        assert got[flag] == default, (flag, got[flag], default)
    # pretrain and finetune take the same names, with their own defaults
    for cmd in ("pretrain", "finetune"):
        assert set(RUN_PY) <= set(_defaults(cmd)), cmd
    assert _defaults("pretrain")["--model_size"] == _defaults("finetune")["--model_size"] == "base"
    assert (_defaults("pretrain")["--task"], _defaults("finetune")["--task"]) == ("pretrain_joint", "ft_avgtok")


def test_docs_table_covers_every_run_py_argument():
    from ssast_fast.cli.options import REFERENCE_ARGS

    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "cli.md")).read()
    table = doc[doc.index("| argument |"):]
    for arg in REFERENCE_ARGS:
        for flag in arg.flags:
            assert f"`{flag}`" in table, flag


def test_no_run_option_begins_with_pretrain_but_the_model_path():
    opts = [o for a in _sub("run")._actions for o in a.option_strings if o.startswith("--pretrain")]
    assert opts == ["--pretrained_mdl_path"]
    a = build_parser().parse_args(["run", "--pretrain", "False", "--pretrained_mdl_path", "m.pth"])
    assert a.pretrained_mdl_path == "m.pth"


def test_ignored_arguments_say_so_in_help():
    from ssast_fast.cli.options import REFERENCE_ARGS

    helps = {cmd: {o: a.help for a in _sub(cmd)._actions for o in a.option_strings} for cmd in ("run", "pretrain",
                                                                                                "finetune")}
    always = {"--optim", "--cluster_factor", "--dataset"}
    pretrain_only = {"--warmup", "--adaptschedule", "--lrscheduler_start", "--lrscheduler_step", "--lrscheduler_decay",
                     "--head_lr", "--save_model", "--wa", "--wa_start", "--wa_end", "--loss", "--metrics"}
    for arg in REFERENCE_ARGS:
        flag = arg.flags[-1]
        if flag in always | pretrain_only:
            assert "pretraining: ignored" in helps["run"][flag], flag
            assert "accepted and ignored in pretraining" in helps["pretrain"][flag], flag
        if flag in always:
            assert "fine-tuning: ignored" in helps["run"][flag], flag
            assert "accepted and ignored in fine-tuning" in helps["finetune"][flag], flag
        if not arg.ignored:
            assert "ignored" not in helps["run"][flag], flag


SHAPES = ["--dataset_mean", "-4", "--dataset_std", "4", "--target_length", "64", "--fshape", "16", "--tshape", "16"]


@pytest.mark.parametrize("extra,flags", [
    ([], ["--dataset_mean", "--dataset_std", "--target_length", "--fshape", "--tshape", "--fstride", "--tstride",
          "--label-csv", "--pretrained_mdl_path"]),
    (["--task", "pretrain_joint"], ["--dataset_mean", "--dataset_std", "--target_length", "--fshape", "--tshape"]),
    (SHAPES + ["--fstride", "16", "--tstride", "16", "--label-csv", "l.csv", "--pretrained_mdl_path", "m.pth"],
     ["--model_size", "base384"]),
    (SHAPES + ["--model_size", "tiny", "--task", "pretrain_joint", "--data-eval", "e.json"], ["--data-eval"]),
    (SHAPES + ["--model_size", "tiny", "--task", "pretrain_joint", "--batch-size", "0"], ["--batch-size"]),
])
def test_unusable_run_py_defaults_name_the_flag(tmp_path, capsys, extra, flags):
    exp = tmp_path / "exp"
    assert main(["run", "--data-train", "tr.json", "--exp-dir", str(exp), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssast-fast run: error: ") and all(f in err for f in flags), err
    if "--task" in extra:
        assert "--label-csv" not in err and "--fstride" not in err  # not needed in pretraining
    assert not exp.exists()


def test_presets_fill_values_and_flags_win():
    argv = ["finetune", "--preset", "esc50-finetune", "--data-train", "x.json", "--exp-dir", "e", "--lr", "3e-4"]
    p = build_parser()
    apply_preset(p, argv)
    a = p.parse_args(argv)
    assert (a.n_class, a.target_length, a.freqm, a.timem, a.loss, a.metrics, a.fstride) == (50, 512, 24, 96, "CE", "acc", 10)
    assert a.noise is True and a.warmup is False and a.lrscheduler_decay == 0.85 and a.lr == 3e-4
    argv = ["pretrain", "--preset=as-frame-pretrain", "--data-train", "x.json", "--exp-dir", "e"]
    p = build_parser()
    apply_preset(p, argv)
    a = p.parse_args(argv)
    assert (a.fshape, a.tshape, a.mask_patch, a.epoch_iter, a.batch_size, a.lr_patience) == (128, 2, 400, 4000, 24, 2)
    sc = PRESETS["speechcommands-finetune"]
    assert (sc["target_length"], sc["mixup"], sc["tstride"], sc["loss"]) == (128, 0.6, 1, "BCE")


def test_end_to_end_pretrain_finetune_eval_embed(tmp_path, capsys):
    # files at 16 kHz, 8 kHz and 22.05 kHz (resampled on load); one undecodable file, skipped
    d = make_tiny_dataset(tmp_path / "ds", n_clips=6, n_class=2, seconds=0.4, rates=(16000, 8000, 22050))
    data = json.load(open(d["train"]))
    (tmp_path / "junk.wav").write_bytes(b"RIFF....junk")
    data["data"].append({"wav": str(tmp_path / "junk.wav"), "labels": "/m/c0"})
    json.dump(data, open(d["train"], "w"))
    tiny = ["--model_size", "tiny", "--target_length", "32", "--fshape", "16", "--tshape", "16", "-w", "0",
            "--no-progress", "-b", "2"]
    pre, ft = str(tmp_path / "pre"), str(tmp_path / "ft")
    assert main(["pretrain", "--data-train", d["train"], "--data-val", d["val"], "--exp-dir", pre, *tiny,
                 "--mask_patch", "6", "--epoch_iter", "2", "--n-epochs", "1", "--warmup-steps", "2",
                 "--n-print-steps", "1", "--skip-bad-audio", "--fbank-in-workers"]) == 0
    out = capsys.readouterr().out
    assert "pretraining finished" in out and "clips/s" in out
    summary = json.load(open(os.path.join(pre, "summary.json")))
    assert summary["steps"] == 3 and summary["skipped_bad_audio"] >= 1
    for f in ("curves.png", "mask_visualization.png", "train_log.csv", "val_log.csv", "checkpoints/best.pt",
              "models/best_audio_model.pth"):
        assert os.path.getsize(os.path.join(pre, f)) > 0, f
    rows = [json.loads(x) for x in open(os.path.join(pre, "metrics.jsonl"))]
    assert [r["lr"] for r in rows if r["split"] == "train"][:2] == [0.0, 0.0005]  # warm-up: step / 2 * lr
    assert main(["finetune", "--data-train", d["train"], "--data-val", d["val"], "--data-eval", d["val"],
                 "--label-csv", d["labels"], "--n_class", "2", "--pretrained_mdl_path",
                 os.path.join(pre, "models", "best_audio_model.pth"), "--exp-dir", ft, *tiny, "--fstride", "16",
                 "--tstride", "16", "--n-epochs", "2", "--warmup", "False", "--freqm", "8", "--timem", "8",
                 "--mixup", "0.5", "--noise", "True", "--loss", "CE", "--metrics", "acc", "--skip-bad-audio",
                 "--lrscheduler_start", "1", "--lrscheduler_step", "1", "--lrscheduler_decay", "0.5"]) == 0
    s = json.load(open(os.path.join(ft, "summary.json")))
    assert s["steps"] == 6 and "best_model_eval" in s
    val = [json.loads(x) for x in open(os.path.join(ft, "metrics.jsonl")) if '"val"' in x]
    assert [r["lr"] for r in val] == [pytest.approx(1e-3), pytest.approx(5e-4)]  # MultiStepLR after epoch 1
    ck = torch.load(os.path.join(ft, "checkpoints", "last.pt"), weights_only=True)
    assert ck["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2.5e-4)
    ev = str(tmp_path / "ev")
    assert main(["eval", "--checkpoint", os.path.join(ft, "checkpoints", "best.pt"), "--data-eval", d["val"],
                 "--label-csv", d["labels"], "--exp-dir", ev, "-w", "0", "--no-progress"]) == 0
    metrics = json.load(open(os.path.join(ev, "eval_metrics.json")))
    assert metrics["acc"] == pytest.approx(s["best_model_eval"]["acc"])
    assert metrics["mAUC"] == pytest.approx(s["best_model_eval"]["mAUC"])
    assert np.load(os.path.join(ev, "predictions.npy")).shape == (3, 2)
    emb = str(tmp_path / "emb")
    assert main(["embed", "--checkpoint", os.path.join(ft, "models", "best_audio_model.pth"), "--data", d["val"],
                 "--out", emb, *tiny, "--fstride", "16", "--tstride", "16", "--per-patch"]) == 0
    e = np.load(os.path.join(emb, "embeddings.npy"))
    assert e.shape == (3, 192) and np.isfinite(e).all()
    assert np.load(os.path.join(emb, "patch_embeddings.npy")).shape == (3, 16, 192)
    assert len(json.load(open(os.path.join(emb, "clips.json")))) == 3
    # the pretraining checkpoint embeds too (its own shape settings)
    assert main(["embed", "--checkpoint", os.path.join(pre, "checkpoints", "last.pt"), "--data", d["val"],
                 "--out", str(tmp_path / "emb2"), "-w", "0", "--no-progress"]) == 0
    assert np.load(os.path.join(tmp_path, "emb2", "embeddings.npy")).shape == (3, 192)


def test_bad_audio_stops_run_with_file_and_line(tmp_path):
    d = make_tiny_dataset(tmp_path / "ds", n_clips=2, n_class=2, seconds=0.2)
    data = json.load(open(d["train"]))
    data["data"][0]["wav"] = str(tmp_path / "nope.wav")
    json.dump(data, open(d["train"], "w"), indent=1)
    from ssast_fast.data import BadAudioError

    with pytest.raises(BadAudioError, match=r"nope.wav.*entry 0 \(line 4\)"):
        main(["pretrain", "--data-train", d["train"], "--exp-dir", str(tmp_path / "x"), "--model_size", "tiny",
              "--target_length", "32", "--mask_patch", "6", "-w", "0", "-b", "2", "--no-progress"])


def test_pretrain_bf16_runs_the_fused_cpu_kernels(tmp_path, capsys):
    """`--precision bf16` on CPU: autocast routes attention and the norms to the C++ kernels
    where the CPU has them (else torch); the run finishes with finite losses either way."""
    d = make_tiny_dataset(tmp_path / "ds", n_clips=4, n_class=2, seconds=0.4, rates=(16000,))
    tiny = ["--model_size", "tiny", "--target_length", "32", "--fshape", "16", "--tshape", "16", "-w", "0",
            "--no-progress", "-b", "2"]
    pre = str(tmp_path / "pre")
    assert main(["pretrain", "--data-train", d["train"], "--exp-dir", pre, *tiny, "--mask_patch", "6",
                 "--epoch_iter", "2", "--n-epochs", "1", "--warmup-steps", "1", "--precision", "bf16"]) == 0
    assert "pretraining finished" in capsys.readouterr().out
    rows = [json.loads(x) for x in open(os.path.join(pre, "metrics.jsonl"))]
    losses = [r[k] for r in rows for k in ("nce", "mse") if k in r]
    assert losses and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("argv,cls,given", [
    (["pretrain"], "PretrainConfig", {"data_train": "t.json", "exp_dir": "e"}),
    (["finetune"], "FinetuneConfig", {"data_train": "t.json", "exp_dir": "e", "label_csv": "l.csv", "n_class": 2}),
    (["eval"], "EvalConfig", {"checkpoint": "m.pth", "data_eval": "t.json", "exp_dir": "e"}),
    (["embed"], "EmbedConfig", {"checkpoint": "m.pth", "data": "t.json", "out": "e"}),
])
def test_command_defaults_are_the_config_defaults(argv, cls, given):
    """A command's defaults are its config's: the same run from the CLI and from Python."""
    import dataclasses

    from ssast_fast.train import config as configs

    flags = {"data_train": "--data-train", "exp_dir": "--exp-dir", "label_csv": "--label-csv", "n_class": "--n_class",
             "checkpoint": "--checkpoint", "data_eval": "--data-eval", "data": "--data", "out": "--out"}
    args = build_parser().parse_args(argv + [a for k, v in given.items() for a in (flags[k], str(v))])
    config = getattr(configs, cls)(**given)
    fields = [f.name for f in dataclasses.fields(config) if f.name not in given and f.name != "cli_args"]
    assert len(fields) > 15
    # eval and embed have no --seed (their loaders use seed 0)
    assert [n for n in fields if not hasattr(args, n)] == ([] if argv[0] in ("pretrain", "finetune") else ["seed"])
    for name in fields:
        assert getattr(args, name, 0) == getattr(config, name), name
