"""Typos fail at once (issue 27, item 7): Schedule keywords, fills and stage dicts are checked when the
Schedule is made, fit's keywords when fit is called: nothing waits for the first boundary."""
import numpy as np
import pytest

import growstage
from growstage.train.schedule import Schedule


def _never_built(stage):
    raise AssertionError("a typo must fail before any model is built")


@pytest.mark.parametrize("kwargs, message", [
    (dict(fill="presrve"), "unknown fill 'presrve' for fill; did you mean 'preserve'?"),
    (dict(allow_new_layer=True), "unknown keyword 'allow_new_layer'; did you mean 'allow_new_layers'"),
    (dict(mode="subst"), "did you mean 'subset'?"),
    (dict(lr_at_growth="rewarn"), "did you mean 'rewarm'"),
])
def test_schedule_keywords_fail_at_construction(kwargs, message):
    with pytest.raises(growstage.GrowstageError, match=message.replace("?", r"\?")):
        Schedule(_never_built, stages=[1, 2], **kwargs)


def test_stage_dicts_fail_at_construction():
    with pytest.raises(growstage.GrowstageError, match=r"stage 1: unknown key 'learnig_rate'; did you mean 'learning_rate'\?"):
        Schedule(_never_built, stages=[1, {"spec": 2, "learnig_rate": 0.1}])
    with pytest.raises(growstage.GrowstageError, match=r"stage 2: unknown fill 'zeroes'.*did you mean 'zeros'\?"):
        Schedule(_never_built, stages=[1, 2, {"spec": 3, "fill": "zeroes"}])
    s = Schedule(_never_built, stages=[1, {"spec": 2, "fill": "zeros", "allow_new_layers": True}])
    assert s.stage(1).transfer_options().allow_new_layers is True


def test_fit_keywords_fail_before_training():
    calls = []
    sched = Schedule(lambda st: calls.append(st) or _never_built(st), stages=[1])
    with pytest.raises(growstage.GrowstageError, match=r"unknown keyword 'checkpoint_dri'.*did you mean 'checkpoint_dir'\?"):
        growstage.fit(sched, np.ones((2, 3)), np.ones((2, 1)), epochs=1, compile=None, checkpoint_dri="x")
    with pytest.raises(growstage.GrowstageError, match="unknown keyword 'batchsize'.*did you mean 'batch_size'"):
        growstage.fit(sched, np.ones((2, 3)), np.ones((2, 1)), epochs=1, compile=None, batchsize=4)
    assert calls == []
