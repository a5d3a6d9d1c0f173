"""Progress: a tqdm bar on a terminal, otherwise a line at least every interval with step, loss,
clips/s and time left; the training commands show it."""
import io
import os

import pytest
import torch

from ssast_fast.train import progress as P
from ssast_fast.train.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(P.time, "perf_counter", c)
    return c


def test_lines_outside_a_terminal_every_interval(clock):
    out = io.StringIO()
    prog = Progress("pretrain", total=100, done=10, stream=out, interval=15.0)
    prog.set_epoch(2, 10)
    for i in range(61):  # a step every 0.5 s
        clock.t += 0.5
        prog.update(clips=8, loss=torch.tensor(2.0 + (i % 2)))
    lines = out.getvalue().splitlines()
    # the first step at once, then a line each time 15 s have passed: steps 11, 41, 71
    assert len(lines) == 3, lines
    assert lines[0].startswith("pretrain: step 11/100 (11%), epoch 2/10, loss 2.0000")
    last = lines[-1]
    assert "step 71/100" in last and "loss 2.5000" in last and "16.0 clips/s" in last
    # 60 steps in 30 s since the first: 29 steps left take 14.5 s
    assert "elapsed 0:00:30" in last and "left ~0:00:14" in last
    prog.close()


def test_bar_on_a_terminal(clock):
    term = Terminal()
    prog = Progress("finetune", total=20, stream=term)
    assert prog.mode == "bar"
    for _ in range(20):
        clock.t += 0.2
        prog.update(clips=4, loss=torch.tensor(1.0))
    prog.close()
    text = term.getvalue()
    assert "finetune" in text and "20/20" in text and "loss 1.0000" in text


def test_validation_and_disabled(clock):
    out = io.StringIO()
    prog = Progress("finetune", total=4, stream=out, interval=1.0)
    seen = []
    for x in prog.wrap(range(5), 5, "validating"):
        clock.t += 0.6
        seen.append(x)
    assert seen == [0, 1, 2, 3, 4] and "finetune: validating 2/5 batches" in out.getvalue()
    off = io.StringIO()
    quiet = Progress("finetune", total=4, stream=off, enabled=False)
    quiet.update(clips=1, loss=1.0)
    assert list(quiet.wrap([1, 2], 2, "validating")) == [1, 2] and off.getvalue() == ""


def test_training_commands_print_progress_lines(tmp_path, capsys):
    from ssast_fast.cli import main
    from ssast_fast.data.synth import make_tiny_dataset

    d = make_tiny_dataset(tmp_path / "ds", n_clips=4, n_class=2, seconds=0.3)
    assert main(["pretrain", "--data-train", d["train"], "--exp-dir", str(tmp_path / "pre"), "--model_size", "tiny",
                 "--target_length", "32", "--mask_patch", "4", "-w", "0", "-b", "2", "--n-epochs", "2",
                 "--epoch_iter", "2", "--progress-interval", "0"]) == 0
    err = capsys.readouterr().err
    for step in (1, 2, 3, 4):
        assert f"pretrain: step {step}/4" in err
    assert "epoch 2/2" in err and "clips/s" in err and "left ~" in err and "loss " in err
    assert os.path.exists(tmp_path / "pre" / "summary.json")
