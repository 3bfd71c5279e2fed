"""A Lightning callback that reports a long fit as it goes: one line per validation (or every
few epochs without one), through whatever logger the caller passes (an asset's
``context.log.info``, ``print``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytorch_lightning as pl


class ProgressLog(pl.Callback):
    """Calls ``log(line)`` after each validation with the epoch, the monitored metric and the
    seconds so far; without validation, every ``every`` epochs."""

    def __init__(self, log: Callable[[str], None], name: str, metric: str = "val_recall@10", every: int = 10):
        self.report, self.name, self.metric, self.every = log, name, metric, max(1, every)
        self.started = time.perf_counter()
        self.validated = False

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def _line(self, trainer: pl.Trainer, tail: str) -> str:
        return (f"{self.name}: epoch {trainer.current_epoch + 1}/{trainer.max_epochs}{tail} "
                f"({time.perf_counter() - self.started:,.0f}s)")

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.validated = True
        value = trainer.callback_metrics.get(self.metric)
        self.report(self._line(trainer, f", validation {self.metric.removeprefix('val_')} {float(value):.4f}"
                            if value is not None else ""))

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.validated and (trainer.current_epoch + 1) % self.every == 0:
            self.report(self._line(trainer, ""))


class TrainClock:
    """Mixin for a LightningModule that sums its training wall time into ``train_seconds``
    without the validation passes Lightning runs inside a train epoch. The module sets
    ``train_seconds = 0.0`` and ``_epoch_started = 0.0`` in ``__init__``, starts the clock in
    ``on_train_epoch_start`` and stops it in ``on_validation_epoch_start`` and
    ``on_train_epoch_end``."""

    train_seconds: float
    _epoch_started: float

    def _start_train_clock(self) -> None:
        self._epoch_started = time.perf_counter()

    def _stop_train_clock(self) -> None:
        if self._epoch_started:
            self.train_seconds += time.perf_counter() - self._epoch_started
            self._epoch_started = 0.0
