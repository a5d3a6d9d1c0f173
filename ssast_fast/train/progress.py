"""Progress of long work: a tqdm bar on a terminal, otherwise a line at least every ``interval`` s.

A line reads ``pretrain: step 120/2250 (5%), epoch 2/30, loss 1.2345, 160.2 clips/s, elapsed 0:00:45,
left ~0:12:30``. The loss is the mean since the previous display; it is kept on the device and
read only when shown (at most once a second on a bar), so progress costs no host sync per step.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Iterable, Iterator, TextIO

import torch

BAR_REFRESH_S = 1.0


def _hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:  # lines instead of a bar
        return None
    return tqdm


class Progress:
    """Progress of one stage of ``total`` steps, ``done`` of them already done (a resumed run).

    Args:
        desc: stage name printed first (``pretrain``, ``finetune``, ``embed``).
        total: steps of the whole stage.
        done: steps done before this process started.
        enabled: False: silent (``--no-progress``, ranks other than 0).
        interval: seconds between lines when ``stream`` is not a terminal.
        stream: where to write (default ``sys.stderr``, as tqdm).
        unit: what a step is, for lines (``step``, ``batch``).
    """

    def __init__(self, desc: str, total: int, done: int = 0, *, enabled: bool = True, interval: float = 15.0,
                 stream: TextIO | None = None, unit: str = "step") -> None:
        self.desc, self.total, self.step_no, self.unit = desc, int(total), int(done), unit
        self.stream = stream or sys.stderr
        self.interval = float(interval)
        self.epoch: tuple[int, int] | None = None
        self.bar = None
        self.mode = None
        if enabled:
            tqdm = _tqdm() if self.stream.isatty() else None
            self.mode = "bar" if tqdm else "lines"
            if tqdm:
                self.bar = tqdm(total=self.total, initial=self.step_no, desc=desc, file=self.stream,
                                dynamic_ncols=True, unit=unit)
        now = time.perf_counter()
        self.t_start = now
        self.t_first: float | None = None       # end of this process's first step (rate excludes warm-up)
        self.first_step = self.step_no
        self.t_shown, self.clips_shown = now, 0
        self.loss_sum: torch.Tensor | float = 0.0
        self.loss_n = 0
        self.clips = 0

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """The 1-based epoch shown in lines and in the bar's postfix."""
        self.epoch = (epoch, epochs)

    def update(self, clips: int = 0, loss: torch.Tensor | float | None = None) -> None:
        """One step done: ``clips`` clips (over all processes) with training ``loss`` (a tensor stays on
        its device until shown)."""
        if self.mode is None:
            return
        self.step_no += 1
        self.clips += clips
        if loss is not None:
            self.loss_sum = self.loss_sum + (loss.detach() if isinstance(loss, torch.Tensor) else loss)
            self.loss_n += 1
        now = time.perf_counter()
        if self.t_first is None:
            self.t_first, self.first_step = now, self.step_no
        if self.bar is not None:
            self.bar.update(1)
            if now - self.t_shown >= BAR_REFRESH_S:
                self.bar.set_postfix_str(self._stats(now, for_bar=True), refresh=False)
                self._shown(now)
        elif self.step_no == self.first_step or now - self.t_shown >= self.interval:
            self._line(self._stats(now, for_bar=False))
            self._shown(now)

    def wrap(self, iterable: Iterable, total: int, what: str) -> Iterator:
        """``iterable`` (e.g. a validation loader of ``total`` batches) with progress: a second bar
        on a terminal, lines every ``interval`` s otherwise."""
        if self.mode is None:
            yield from iterable
            return
        tqdm = _tqdm() if self.mode == "bar" else None
        if tqdm is not None:
            yield from tqdm(iterable, total=total, desc=f"{self.desc}: {what}", file=self.stream, leave=False,
                            dynamic_ncols=True, position=1)
            return
        for i, item in enumerate(iterable):
            now = time.perf_counter()
            if now - self.t_shown >= self.interval:
                self._line(f"{what} {i}/{total} batches")
                self.t_shown = now
            yield item

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    # ---- formatting ---------------------------------------------------------------------------
    def _shown(self, now: float) -> None:
        self.t_shown, self.clips_shown = now, self.clips
        self.loss_sum, self.loss_n = 0.0, 0

    def _stats(self, now: float, for_bar: bool) -> str:
        parts = []
        if not for_bar:
            pct = f" ({100 * self.step_no / self.total:.0f}%)" if self.total else ""
            parts.append(f"{self.unit} {self.step_no}/{self.total}{pct}")
        if self.epoch:
            parts.append(f"epoch {self.epoch[0]}/{self.epoch[1]}")
        if self.loss_n:
            parts.append(f"loss {float(self.loss_sum) / self.loss_n:.4f}")
        dt = now - self.t_shown
        if self.clips > self.clips_shown and dt > 0:
            parts.append(f"{(self.clips - self.clips_shown) / dt:.1f} clips/s")
        if not for_bar:
            parts.append(f"elapsed {_hms(now - self.t_start)}")
            done = self.step_no - self.first_step
            if done > 0 and self.t_first is not None and now > self.t_first:
                parts.append(f"left ~{_hms((self.total - self.step_no) * (now - self.t_first) / done)}")
        return ", ".join(parts)

    def _line(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=self.stream, flush=True)
