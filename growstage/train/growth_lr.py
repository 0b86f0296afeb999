"""The learning rate and the optimizer state at a growth point: per-stage options of :func:`growstage.fit`.

``lr_at_growth``:

- ``keep`` (default): the schedule goes on where it was (the new optimizer
  starts at the old one's iteration count);
- ``rewarm``: as ``keep``, times a linear ramp from ``1/warmup_steps`` to 1
  over the stage's first ``warmup_steps`` steps (staged training, LEMON);
- ``rewind``: the schedule starts over from its step 0 (re-warm-up included,
  if the schedule has one); ``warmup_steps`` adds a ramp on top.

``optimizer_state`` (what new entries of the optimizer's slots hold):

- ``copy`` (default): slots follow the params' growth map: a copied or cloned
  entry gets its original's slot, scaled as the param (scale, scale**2);
- ``zero``: entries that were there keep their slots, every new entry (grown
  positions, and whole layers copied from another layer) starts at zero;
- ``reset``: every slot starts at zero and the iteration count at 0 (Adam's
  bias correction starts over); the learning-rate schedule still keeps its
  position unless ``lr_at_growth="rewind"``.

Example::

    >>> import keras
    >>> opt = keras.optimizers.Adam(keras.optimizers.schedules.PolynomialDecay(1.0, 100, 0.0))
    >>> _ = opt.iterations.assign(50)
    >>> _ = at_growth(opt, "rewarm", warmup_steps=10, global_step=50)
    >>> round(float(opt.learning_rate), 4)   # half-way down the decay, first step of a 10-step ramp
    0.05
"""
from __future__ import annotations

from typing import Any

import keras

from growstage.train.schedule import LR_AT_GROWTH, OPTIMIZER_STATE, check_growth_options  # noqa: F401


@keras.saving.register_keras_serializable(package="growstage")
class GrowthLR(keras.optimizers.schedules.LearningRateSchedule):
    """``base(step + shift) * min(1, (step - start + 1) / warmup)``; ``base`` a schedule or a number."""

    def __init__(self, base: Any, shift: int = 0, start: int = 0, warmup: int = 0):
        self.base, self.shift, self.start, self.warmup = base, int(shift), int(start), int(warmup)

    def __call__(self, step: Any) -> Any:
        s = keras.ops.cast(step, "float32")
        lr = self.base(s + self.shift) if callable(self.base) else keras.ops.cast(self.base, "float32")
        if self.warmup > 0:
            lr = lr * keras.ops.clip((s - self.start + 1.0) / self.warmup, 0.0, 1.0)
        return lr

    def get_config(self) -> dict:
        base = self.base if not callable(self.base) else keras.saving.serialize_keras_object(self.base)
        return {"base": base, "shift": self.shift, "start": self.start, "warmup": self.warmup}


def _base(optimizer: Any) -> Any:
    lr = optimizer._learning_rate
    if isinstance(lr, GrowthLR):
        return lr.base
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule) or callable(lr):
        return lr
    return float(keras.ops.convert_to_numpy(lr))


def at_growth(optimizer: Any, lr_at_growth: str = "keep", *, warmup_steps: int = 0, global_step: int) -> int:
    """Set ``optimizer``'s learning rate for a stage that starts at schedule step ``global_step``.

    Call it after the optimizer state was transferred (or reset).  Returns the
    schedule step of the optimizer's iteration 0 under the new setting, so the
    next growth knows where the schedule stands (``global_step`` there is that
    plus the iteration count)."""
    check_growth_options(lr_at_growth, warmup_steps, "copy", "at_growth")
    it = int(keras.ops.convert_to_numpy(optimizer.iterations))
    shift = -it if lr_at_growth == "rewind" else global_step - it
    if shift == 0 and warmup_steps == 0 and not isinstance(optimizer._learning_rate, GrowthLR):
        return 0
    optimizer.learning_rate = GrowthLR(_base(optimizer), shift=shift, start=it, warmup=warmup_steps)
    return shift


def lr_settings(optimizer: Any) -> list[int] | None:
    """``[shift, start, warmup]`` of a :class:`GrowthLR` in use (for a checkpoint's metadata), else None."""
    lr = getattr(optimizer, "_learning_rate", None)
    return [lr.shift, lr.start, lr.warmup] if isinstance(lr, GrowthLR) else None


def restore_lr(optimizer: Any, settings: Any) -> int:
    """Put back what :func:`lr_settings` recorded (resuming mid-stage); returns the shift."""
    if not settings:
        return 0
    shift, start, warmup = (int(v) for v in settings)
    optimizer.learning_rate = GrowthLR(_base(optimizer), shift=shift, start=start, warmup=warmup)
    return shift
