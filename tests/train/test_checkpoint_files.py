"""A model file is data, never code: a file whose unpickling would run a command is refused by every
entry point that takes a model or checkpoint file (Python API and CLI), in torch's zip and legacy
formats, before anything is written; training checkpoints are plain data (weights_only=True)."""
import io
import os
import random

import numpy as np
import pytest
import torch

from ssast_fast.checkpoint import (TRAINING_FORMAT, capture_rng_state, load_model_file, load_reference,
                                   load_training_checkpoint, restore_rng_state, safe_load)
from ssast_fast.cli import main
from ssast_fast.data.synth import make_tiny_dataset

FORMATS = {"zip": True, "legacy": False}


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_file(folder, fmt: str, kind: str) -> tuple[str, str]:
    """(path, marker) of a file named like the official model whose unpickling writes ``marker``:
    a reference-style state dict or one dressed as our training checkpoint."""
    marker = str(folder / f"PWNED_{fmt}_{kind}")
    payload = Payload(marker)
    if kind == "state_dict":
        obj = {"module.v.pos_embed": torch.zeros(1, 3, 4), "module.v.cls_token": payload}
    else:
        obj = {"format": TRAINING_FORMAT, "model": {"v.pos_embed": torch.zeros(1)}, "rng": payload, "config": {},
               "extra": {}, "step": 0, "epoch": 0, "optimizer": {}, "scheduler": None}
    path = folder / f"{fmt}_{kind}" / "SSAST-Base-Patch-400.pth"
    path.parent.mkdir(parents=True)
    torch.save(obj, path, _use_new_zipfile_serialization=FORMATS[fmt])
    return str(path), marker


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("ds"), n_clips=2, n_class=2, seconds=0.2)


def _refused(excinfo, path):
    msg = str(excinfo.value)
    assert path in msg and "refused" in msg and "system" in msg, msg


TINY = ["--model_size", "tiny", "--target_length", "32", "--fshape", "16", "--tshape", "16", "-w", "0",
        "--no-progress", "-b", "2"]


def _cli_entry_points(data, path, exp):
    ft = ["--data-train", data["train"], "--data-val", data["val"], "--label-csv", data["labels"], "--n_class", "2",
          *TINY, "--exp-dir", exp]
    run = ["run", *ft, "--dataset_mean", "-4", "--dataset_std", "4", "--fstride", "16", "--tstride", "16",
           "--task", "ft_avgtok"]
    return {
        "finetune --pretrained_mdl_path": ["finetune", *ft, "--pretrained_mdl_path", path],
        "finetune --resume": ["finetune", *ft, "--resume", path],
        "pretrain --pretrained_mdl_path": ["pretrain", *ft, "--pretrained_mdl_path", path],
        "pretrain --resume": ["pretrain", *ft, "--resume", path],
        "run --pretrained_mdl_path": [*run, "--pretrained_mdl_path", path],
        "run --resume": [*run, "--resume", path],
        "embed --checkpoint": ["embed", "--checkpoint", path, "--data", data["val"], "--out", exp, *TINY],
        "eval --checkpoint": ["eval", "--checkpoint", path, "--data-eval", data["val"], "--label-csv", data["labels"],
                              "--exp-dir", exp, *TINY],
    }


@pytest.mark.parametrize("kind", ["state_dict", "training"])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_entry_point_refuses_a_file_that_runs_code(tmp_path, data, fmt, kind):
    from ssast_fast import ASTModel

    path, marker = evil_file(tmp_path, fmt, kind)
    api = {
        "safe_load": lambda: safe_load(path),
        "load_reference": lambda: load_reference(path),
        "load_model_file": lambda: load_model_file(path),
        "load_training_checkpoint": lambda: load_training_checkpoint(path),
        "ASTModel(load_pretrained_mdl_path=...)": lambda: ASTModel(
            label_dim=2, fshape=16, tshape=16, fstride=16, tstride=16, input_fdim=128, input_tdim=32, model_size="tiny",
            pretrain_stage=False, load_pretrained_mdl_path=path),
    }
    for name, call in api.items():
        with pytest.raises(ValueError) as e:
            call()
        _refused(e, path)
        assert not os.path.exists(marker), name
    for name, argv in _cli_entry_points(data, path, str(tmp_path / "exp")).items():
        with pytest.raises(ValueError) as e:
            main(argv)
        _refused(e, path)
        assert not os.path.exists(marker), name
        assert not (tmp_path / "exp").exists(), f"{name} wrote to its run folder before the check"


def test_refusal_names_what_the_file_holds(tmp_path):
    path, _ = evil_file(tmp_path, "zip", "state_dict")
    with pytest.raises(ValueError, match=r"posix\.system|os\.system") as e:
        safe_load(path)
    assert "only tensors, numbers, strings, lists and dicts" in str(e.value)
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        safe_load(bad)
    with pytest.raises(ValueError, match="not found"):
        safe_load(tmp_path / "missing.pth")


def test_training_checkpoints_are_plain_data(tmp_path):
    """Format 2 loads with torch's own weights_only=True (no allow-list) and names no global."""
    from ssast_fast.checkpoint import save_training_checkpoint

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [1, 2])
    path = str(tmp_path / "last.pt")
    random.gauss(0, 1)  # a cached Gaussian in both RNGs
    np.random.randn()
    save_training_checkpoint(path, model=model, optimizer=opt, scheduler=sched, step=3, epoch=1,
                             config={"lr": 1e-3, "task": "ft_avgtok"}, extra={"best": -float("inf"), "result": [[1.0]]})
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    ck = torch.load(path, weights_only=True)
    expected = (random.gauss(0, 1), np.random.randn(), torch.rand(2))
    restore_rng_state(ck["rng"])
    got = (random.gauss(0, 1), np.random.randn(), torch.rand(2))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])
    sd, training = load_model_file(path)
    assert training["step"] == 3 and torch.equal(sd["weight"], model.weight.detach())


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_format_1_checkpoints_still_load_and_restore_exactly(tmp_path, fmt):
    """Files of the previous format (raw Python / NumPy RNG states, also per rank) load through the
    few NumPy globals they need and restore the exact streams."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    path = tmp_path / "v1.pt"
    torch.save({"format": "ssast_fast.training/1", "model": {"w": torch.ones(2)}, "rng": state,
                "extra": {"rank_rng": {0: state, 1: state}}, "config": {}}, path,
               _use_new_zipfile_serialization=FORMATS[fmt])
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # torch alone refuses the NumPy array ...
    ck = load_training_checkpoint(path)  # ... our reader allows exactly its few NumPy types
    for s in (ck["rng"], ck["extra"]["rank_rng"][1]):
        restore_rng_state(s)
        assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert load_model_file(path)[0]["w"].tolist() == [1.0, 1.0]


def test_capture_is_plain_and_round_trips():
    s = capture_rng_state()
    buf = io.BytesIO()
    torch.save(s, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    a = (random.random(), np.random.rand())
    restore_rng_state(loaded)
    assert (random.random(), np.random.rand()) == a
