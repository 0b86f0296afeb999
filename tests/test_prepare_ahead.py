"""fit(prepare_ahead=True): the next stage is prepared while the last epoch trains, and the run is
bit for bit the synchronous one (weights, optimizer state, losses); a failing preparation falls
back to the boundary with a note; the background thread leaves the caller's state alone."""
import random
import threading

import keras
import numpy as np
import pytest

import growstage as gr
from growstage.framework.background import Background
from growstage.framework.variables import deferred_init
from growstage.train.schedule import Schedule

L = keras.layers


def build(stage):
    depth, width = stage.spec
    x = keras.Input((5, 4))
    h = x
    for i in range(depth):
        # default initializers: their seeds come from Python's random, the stream the thread isolates
        h = L.LSTM(width, return_sequences=True, name=f"lstm{i}")(h)
        h = L.Dropout(0.25, name=f"drop{i}")(h)
    return keras.Model(x, L.Dense(3, name="out")(h))


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(48, 5, 4)).astype("f4"), rng.normal(size=(48, 5, 3)).astype("f4")


def run(prepare_ahead, build_fn=build, stages=((1, 6), (2, 6), (2, 9), (2, 9)), epochs=6):
    x, y = data()
    sched = Schedule(build_fn, stages=list(stages), repetitions=[1, 2, 1, 2])
    return gr.fit(sched, x, y, epochs=epochs, seed=11, log=None, prepare_ahead=prepare_ahead, batch_size=8,
                  shuffle=True, compile=lambda m, s: m.compile(optimizer="adam", loss="mse"))


def state(hist):
    m = hist.model
    return ([np.array(v) for v in m.weights], [np.array(v) for v in m.optimizer.variables],
            [e["loss"] for e in hist.epochs])


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


def test_prepared_ahead_is_bit_identical_to_the_synchronous_path():
    sync, ahead = run(False), run(True)
    assert [t.get("prepared_ahead") for t in ahead.transitions] == [True, True, False]
    assert [t.get("prepared_ahead") for t in sync.transitions] == [False, False, False]
    w0, o0, l0 = state(sync)
    w1, o1, l1 = state(ahead)
    assert same(w0, w1) and same(o0, o1)
    assert l0 == l1  # every epoch, the last epoch of each stage (trained beside the thread) included
    for a, b in zip(sync.transitions, ahead.transitions):
        if a["report"] is not None:
            assert a["report"].table() == b["report"].table()
    # and the run really depends on the seed (the comparison could fail)
    x, y = data()
    other = gr.fit(Schedule(build, stages=[(1, 6), (2, 6)]), x, y, epochs=2, seed=12, log=None, batch_size=8,
                   prepare_ahead=True, compile=lambda m, s: m.compile(optimizer="adam", loss="mse"))
    assert not np.array_equal(np.array(other.model.weights[0]), w1[0])


def failing_in_background(stage):
    if stage.index == 1 and threading.current_thread().name == "growstage-prepare":
        raise RuntimeError("no room for the next stage")
    return build(stage)


def test_a_failing_preparation_falls_back_to_the_boundary_with_a_note():
    sync, ahead = run(False), run(True, failing_in_background)
    first = ahead.transitions[0]
    assert first["prepared_ahead"] is False and ahead.transitions[1]["prepared_ahead"] is True
    assert any("preparing ahead failed (RuntimeError: no room for the next stage)" in n
               and "prepared at the boundary instead" in n for n in first["report"].notes)
    assert same(state(sync)[0], state(ahead)[0])


def test_an_error_of_the_transfer_itself_is_raised_at_the_boundary():
    def renamed(stage):
        m = build(stage)
        if stage.index == 1:
            return keras.Model(m.inputs, L.Dense(3, name="head")(m.layers[-2].output))
        return m

    stages = ((1, 6), (1, 8), (1, 8), (1, 8))
    with pytest.raises(gr.GrowstageError) as sync:
        run(False, renamed, stages=stages, epochs=2)
    with pytest.raises(gr.GrowstageError) as ahead:
        run(True, renamed, stages=stages, epochs=2)
    assert "out" in str(sync.value) and str(ahead.value) == str(sync.value)


def test_the_thread_draws_from_its_own_random_and_hands_its_state_over():
    random.seed(5)
    before = random.getstate()
    job = Background(lambda: [random.random() for _ in range(3)], seed=99)
    drawn = job.result()
    assert random.getstate() == before  # the caller's stream did not move
    r = random.Random(99)  # what random.seed(99) would have drawn in the caller
    assert drawn == [r.random() for _ in range(3)]
    job.adopt()
    expected = random.Random(99)
    [expected.random() for _ in range(3)]
    assert random.random() == expected.random()


def test_the_thread_builds_with_the_callers_dtype_policy():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = Background(lambda: L.Dense(2)).result()
    finally:
        keras.config.set_dtype_policy("float32")
    assert layer.dtype_policy.name == "mixed_float16"


def test_only_the_deferring_thread_defers():
    with deferred_init() as pending:
        other = Background(lambda: (lambda d: (d.build((None, 3)), d)[1])(L.Dense(2, name="elsewhere"))).result()
        mine = L.Dense(2, name="here")
        mine.build((None, 3))
    # (PyTorch builds normally: nothing is deferred there, in any thread)
    assert not pending.is_pending(other.kernel) and pending.is_pending(mine.kernel) == pending.active
    assert np.any(np.array(other.kernel) != 0)
    pending.materialize_all()


class UnseededNormal(keras.initializers.Initializer):
    """Draws from Keras's global seed generator (keras.random without a seed)."""

    def __call__(self, shape, dtype=None):
        return keras.random.normal(shape, stddev=0.1, dtype=dtype)


def small(stage, init=None, seed_in_build=None):
    if seed_in_build is not None:
        keras.utils.set_random_seed(seed_in_build)  # a common habit: the build seeds everything
    x = keras.Input((4,))
    h = x
    for i in range(stage.spec):
        h = L.Dense(5, kernel_initializer=init or "glorot_uniform", name=f"d{i}")(h)
    return keras.Model(x, L.Dense(1, name="out")(h))


def run_small(prepare_ahead, build_fn, epochs=3, compile=None, **kw):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 4)).astype("f4"), rng.normal(size=(16, 1)).astype("f4")
    return gr.fit(Schedule(build_fn, stages=[1, 2, 3]), x, y, epochs=epochs, seed=0, log=None, batch_size=4,
                  prepare_ahead=prepare_ahead, compile=compile or (lambda m, s: m.compile(optimizer="adam", loss="mse")),
                  **kw)


@pytest.mark.parametrize("build_fn", [lambda s: small(s, UnseededNormal()), lambda s: small(s, seed_in_build=5)],
                         ids=["unseeded-keras-random", "set_random_seed-in-build"])
def test_keras_global_generator_and_seeding_in_the_build_stay_bit_identical(build_fn):
    sync, ahead = run_small(False, build_fn), run_small(True, build_fn)
    assert [t["prepared_ahead"] for t in ahead.transitions] == [True, True]
    w0, o0, l0 = state(sync)
    w1, o1, l1 = state(ahead)
    assert same(w0, w1) and same(o0, o1) and l0 == l1


def test_no_thread_outlives_fit_when_the_prepared_epoch_raises():
    def slow_in_thread(stage):
        if threading.current_thread().name == "growstage-prepare":
            threading.Event().wait(1.0)
        return small(stage)

    def boom(epoch, model, logs):
        raise RuntimeError("stop here")

    patched = random.randint
    with pytest.raises(RuntimeError, match="stop here"):
        run_small(True, slow_in_thread, on_epoch_end=boom)
    assert not [t for t in threading.enumerate() if t.name == "growstage-prepare"]
    assert random.randint is patched  # the thread's own random is gone with it


def test_overlapping_deferred_blocks_of_two_threads_leave_no_patch_behind():
    cls = type(keras.Variable(np.zeros(1, "f4")))
    before = {n: cls.__dict__.get(n) for n in ("_initialize_with_initializer", "_deferred_initialize")}
    entered, leave = threading.Event(), threading.Event()

    def other():
        with deferred_init():
            entered.set()
            leave.wait(5)

    t = threading.Thread(target=other)
    with deferred_init() as mine:  # A enters, B enters, A leaves, B leaves
        t.start()
        entered.wait(5)
    leave.set()
    t.join()
    assert {n: cls.__dict__.get(n) for n in before} == before
    d = L.Dense(2, name="after")
    d.build((None, 3))
    assert not mine.is_pending(d.kernel) and np.any(np.array(d.kernel) != 0)


def test_a_stage_that_keeps_the_model_applies_its_options_and_keeps_the_optimizer_state():
    def same_arch(stage):
        return small(type(stage)(stage.index, 2, 1))  # every spec builds the same network

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 4)).astype("f4"), rng.normal(size=(16, 1)).astype("f4")
    seen = []
    stages = [{"spec": "a"}, {"spec": "b", "learning_rate": 0.5, "frozen": ["d0"]}]
    for ahead in (False, True):
        hist = gr.fit(Schedule(same_arch, stages=stages), x, y, epochs=2, seed=0, log=None, batch_size=4,
                      prepare_ahead=ahead, compile=lambda m, s: m.compile(optimizer="adam", loss="mse"),
                      on_epoch_end=lambda e, m, l: seen.append((e, float(np.array(m.optimizer.learning_rate)),
                                                                 m.get_layer("d0").trainable,
                                                                 int(np.array(m.optimizer.iterations)))))
        t = hist.transitions[0]
        assert t["rebuilt"] is False and {"seconds", "prepared_ahead", "waited"} <= set(t)
    # epoch 1: the new rate, d0 frozen, and the step count goes on from epoch 0's 4 steps
    assert seen[:2] == [(0, pytest.approx(0.001), True, 4), (1, 0.5, False, 8)] and seen[2:] == seen[:2]


def fit_small(build_fn, stages, epochs, **kw):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 4)).astype("f4"), rng.normal(size=(16, 1)).astype("f4")
    seen, kernels = [], []

    def look(epoch, model, logs):
        lr = model.optimizer._learning_rate
        seen.append((epoch, type(lr).__name__, float(np.array(model.optimizer.learning_rate)),
                     int(np.array(model.optimizer.iterations))))
        kernels.append(np.array(model.get_layer("d0").kernel) if "d0" in [l.name for l in model.layers] else None)

    kw.setdefault("compile", lambda m, s: m.compile(optimizer="adam", loss="mse"))
    hist = gr.fit(Schedule(build_fn, stages=stages, **kw.pop("schedule", {})), x, y, epochs=epochs, seed=0,
                  log=None, batch_size=4, on_epoch_end=look, **kw)
    hist.kernels = kernels
    return hist, seen


def test_a_kept_model_with_automatic_names_takes_a_new_learning_rate():
    def auto(stage):
        x = keras.Input((4,))
        return keras.Model(x, L.Dense(1)(L.Dense(5)(x)))

    hist, seen = fit_small(auto, [{"spec": "a"}, {"spec": "a", "learning_rate": 0.5}], 2)
    assert [s[2] for s in seen] == [pytest.approx(0.001), 0.5] and seen[1][3] == 8


def test_a_kept_model_unfreezes_and_a_warmup_under_way_goes_on():
    stages = [{"spec": 1}, {"spec": 2, "lr_at_growth": "rewarm", "warmup_steps": 100, "frozen": ["d0"]},
              {"spec": 2}]
    trainable = []
    hist, seen = fit_small(small, stages, 3, schedule={"repetitions": 1})
    assert hist.model.get_layer("d0").trainable is True  # frozen in stage 1 only
    k = hist.kernels
    # frozen in epoch 1, trained in epoch 2 (its variables were created while it was frozen: they
    # must still be ones a GradientTape watches)
    assert np.array_equal(k[1], k[0]) \
        and not np.array_equal(k[1], k[2])
    (_, kind1, lr1, it1), (_, kind2, lr2, it2) = seen[1], seen[2]
    assert kind1 == kind2 == "GrowthLR" and it2 == it1 + 4 and lr1 < lr2 < 0.001  # still warming up


def test_a_kept_model_carries_its_stages_notes():
    stages = [{"spec": 1}, {"spec": 1, "mode": "ifpossible", "learning_rate": 0.01}]
    hist, _ = fit_small(small, stages, 2, schedule={"mode": "subset"})
    t = hist.transitions[0]
    assert t["report"] is None and t["notes"] == ["stage 1: its own mode 'ifpossible' overrides the schedule's "
                                                  "mode='subset'"]


def test_an_optimizer_whose_build_reads_the_params_is_built_at_the_boundary():
    compile_ = lambda m, s: m.compile(optimizer=keras.optimizers.ScheduleFreeAdamW(), loss="mse")  # noqa: E731
    runs = [run_small(ahead, small, compile=compile_, reset_optimizer=True) for ahead in (False, True)]
    assert [t["prepared_ahead"] for t in runs[1].transitions] == [True, True]
    (w0, o0, l0), (w1, o1, l1) = state(runs[0]), state(runs[1])
    assert same(w0, w1) and same(o0, o1) and l0 == l1


def test_a_heap_the_caller_froze_stays_theirs():
    import gc

    from growstage.framework.traces import frozen_heap

    gc.freeze()
    try:
        n = gc.get_freeze_count()
        with frozen_heap():
            assert gc.get_freeze_count() == n
        assert gc.get_freeze_count() == n
    finally:
        gc.unfreeze()


def test_automatic_names_fail_at_the_boundary_as_without_preparing_ahead():
    def auto(stage):
        x = keras.Input((4,))
        h = x
        for _ in range(stage.spec):
            h = L.Dense(5)(h)
        return keras.Model(x, L.Dense(1)(h))

    for ahead in (False, True):
        done = []
        with pytest.raises(gr.GrowstageError, match="auto-generated name"):
            gr.fit(Schedule(auto, stages=[1, 2]), np.ones((8, 4), "f4"), np.ones((8, 1), "f4"), epochs=2, seed=0,
                   log=None, prepare_ahead=ahead, on_epoch_end=lambda e, m, l: done.append(e),
                   compile=lambda m, s: m.compile(optimizer="adam", loss="mse"))
        assert done == [0]  # the first epoch trained; the error comes at the boundary
