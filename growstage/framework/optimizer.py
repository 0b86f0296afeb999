"""Optimizer state of Keras 3 optimizers, per param, and its transfer across growth.

Slot families are found generically: every list attribute of the optimizer
holding one variable per trainable variable, with matching shapes (Adam's
``_momentums`` and ``_velocities``, RMSprop's ``_velocities``, SGD's
``momentums``, ...).  Each slot is resized with the plan of its param: copied,
sliced or padded block-wise, new entries zero; under a function-preserving
fill (net2net, double) a slot follows its param's growth map, scaled by
``scale`` (first moments) or ``scale**2`` (second moments).  The iteration
count is kept.  ``new_entries="zero"`` keeps only the entries that were there
(at their scale) and zeroes every new one, including whole layers copied from
another layer (depth by stacking).

Example::

    >>> import keras
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="out")])
    >>> m.compile(optimizer="adam", loss="mse"); m.optimizer.build(m.trainable_variables)
    >>> sorted(optimizer_state(m)["slots"]["out"]["kernel"])
    ['_momentums', '_velocities']
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from growstage.core.resize import resize
from growstage.core.growth import for_row
from growstage.core.errors import GrowstageError, did_you_mean
from growstage.core.vocab import Action
from growstage.framework.adapters.graph import describe
from growstage.framework.device_values import device_source, on_mesh, target_sharding, value_on_devices
from growstage.framework.variables import UndoLog, read_tensor, read_variable, reads_alias, tensor_view

_CARRIED = (Action.COPIED, Action.SLICED, Action.PADDED, Action.CUSTOM)


def slot_power(family: str) -> int:
    """2 for slots that accumulate squared gradients (Adam's and RMSprop's velocities, Adagrad's
    accumulators), else 1: a param scaled by s has its slot scaled by s**power."""
    f = family.lower()
    return 2 if ("veloc" in f or "accum" in f or "hat" in f) else 1


def _slot_families(optimizer: Any) -> dict[str, list]:
    tvars = list(getattr(optimizer, "_trainable_variables", []) or [])
    if not tvars:
        return {}
    fams = {}
    for attr, val in vars(optimizer).items():
        if attr == "_trainable_variables" or not isinstance(val, list) or len(val) != len(tvars):
            continue
        if all(hasattr(v, "assign") and tuple(v.shape) == tuple(t.shape) for v, t in zip(val, tvars)):
            fams[attr] = val
    return fams


def _param_keys(infos: dict) -> dict[int, tuple[str, str]]:
    return {id(p.variable): (lname, p.name) for lname, info in infos.items() for p in info.params}


def optimizer_state(model: Any, optimizer: Any | None = None, *, allow_auto_names: bool = False,
                    device: bool = False) -> dict:
    """``{"iterations": int, "slots": {layer: {param: {family: ndarray}}}, "class": name}``.

    ``device=True``: slots as the backend's device arrays where reading one costs no copy
    (TensorFlow, JAX; see ``read_tensor``), for a transfer within the process: a slot of
    unchanged shape is then written with one device copy.  On PyTorch a read is a clone on the
    device, so slots go to host memory as without it (no extra accelerator memory)."""
    opt = optimizer or model.optimizer
    keys = _param_keys(describe(model, allow_auto_names=allow_auto_names))
    slots: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    fams = _slot_families(opt)
    for i, tv in enumerate(getattr(opt, "_trainable_variables", []) or []):
        key = keys.get(id(tv))
        if key is None:
            continue
        entry = slots.setdefault(key[0], {}).setdefault(key[1], {})
        for fam, vs in fams.items():
            t = read_tensor(vs[i]) if device and reads_alias() else None
            entry[fam] = t if t is not None else np.array(read_variable(vs[i]))
    return {"iterations": int(read_variable(opt.iterations)), "slots": slots, "class": type(opt).__name__}


def ensure_built(model: Any) -> Any:
    opt = model.optimizer
    if not getattr(opt, "built", False):
        opt.build(model.trainable_variables)
    return opt


# Keras optimizers whose build() makes slots from their params' shapes alone (ScheduleFreeAdamW, say,
# copies the params' values into a slot): only these may be built before the params have values
_SHAPE_ONLY_BUILDS = ("Adam", "AdamW", "Adamax", "Nadam", "SGD", "RMSprop", "Adagrad", "Adadelta", "Ftrl", "Lion",
                      "Adafactor", "Lamb", "Muon")


def builds_from_shapes(optimizer: Any) -> bool:
    """Whether ``optimizer`` (a Keras built-in, or a loss-scale wrapper of one) builds its slots from
    the params' shapes alone, so it may be built while the params wait for their values.

    Example::

        >>> import keras
        >>> builds_from_shapes(keras.optimizers.Adam()), builds_from_shapes(object())
        (True, False)
    """
    opt = getattr(optimizer, "inner_optimizer", optimizer)
    return type(opt).__module__.startswith("keras.") and type(opt).__name__ in _SHAPE_ONLY_BUILDS


def carry_over(old: Any, model: Any) -> dict[str, int]:
    """After ``model`` was recompiled (same variables, a new optimizer of ``old``'s class), the new
    optimizer continues ``old``'s state: the slots of every param both train, and the iteration
    count.  Params that train only now start with zero slots.  All or nothing.

    Example::

        >>> import keras
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> m.compile(optimizer="adam", loss="mse"); m.optimizer.build(m.trainable_variables)
        >>> old = m.optimizer
        >>> m.compile(optimizer="adam", loss="mse"); carry_over(old, m)
        {'slots_written': 4, 'slots_zero': 0}
    """
    new = ensure_built(model)
    counts = {"slots_written": 0, "slots_zero": 0}
    if not getattr(old, "built", False) or type(old) is not type(new):
        return counts
    old_fams, new_fams = _slot_families(old), _slot_families(new)
    index = {id(v): i for i, v in enumerate(old._trainable_variables)}
    undo = UndoLog()
    try:
        undo.write(new.iterations, np.array(read_variable(old.iterations)), "iterations")
        for j, v in enumerate(new._trainable_variables):
            i = index.get(id(v))
            for fam, slots in new_fams.items():
                if i is None or fam not in old_fams:
                    counts["slots_zero"] += 1
                    continue
                src = old_fams[fam][i]
                t = read_tensor(src)
                undo.write(slots[j], t if t is not None else read_variable(src), f"{v.path}:{fam}")
                counts["slots_written"] += 1
    except BaseException as e:
        undo.fail(e, "carrying the optimizer state over the recompile failed")
    return counts


def transfer_optimizer_state(state: dict, plan: Any, model: Any, *, reset: bool = False,
                             new_entries: str = "copy") -> dict[str, int]:
    """Write ``state`` into ``model.optimizer`` following ``plan`` (the param transfer's plan); all or nothing.

    Returns counts per outcome.  With ``reset=True``, or when the new stage
    uses another optimizer class, slots stay zero and the iteration count
    starts over.  ``new_entries``: ``copy`` (slots follow the growth map) or
    ``zero`` (entries that were there keep their slot at their scale; new
    positions, and whole layers copied from another layer, start at zero).
    """
    if new_entries not in ("copy", "zero"):
        raise GrowstageError(f"new_entries must be 'copy' or 'zero', not {new_entries!r}"
                             f"{did_you_mean(str(new_entries), ('copy', 'zero'))}")
    opt = ensure_built(model)
    counts = {"slots_written": 0, "slots_zero": 0}
    if reset or (state.get("class") and state["class"] != type(opt).__name__):
        return counts
    undo = UndoLog()
    try:
        undo.write(opt.iterations, np.asarray(state["iterations"], np.dtype(opt.iterations.dtype)), "iterations")
        for var, value, label in _slot_values(state, plan, opt, counts, new_entries):
            undo.write(var, value, label)
    except BaseException as e:
        undo.fail(e, "optimizer state transfer failed")
    return counts


def _original_layers(rows: Any) -> dict[str, str]:
    """Per source key, the target layer that continues it: the one of the source's own name, else the
    first in plan order.  Other targets fed by the same key are copies (a renamed layer is no copy)."""
    first: dict[str, str] = {}
    for row in rows:
        if row.layer is not None and row.source is not None:
            if row.source not in first or row.source_layer == row.layer:
                first[row.source] = row.layer
    return first


def _slot_values(state: dict, plan: Any, opt: Any, counts: dict[str, int],
                 new_entries: str = "copy") -> Iterator[tuple[Any, np.ndarray, str]]:
    """``(slot variable, new value, label)`` for every slot whose param has a source."""
    fams = _slot_families(opt)
    keys = _param_keys(plan.targets)  # the plan already described this model
    index = {keys[id(tv)]: i for i, tv in enumerate(opt._trainable_variables) if id(tv) in keys}
    first = _original_layers(plan.rows)
    for row in plan.rows:
        if row.layer is None or (row.layer, row.param) not in index:
            continue
        i = index[(row.layer, row.param)]
        src = None
        if row.source is not None and row.action in _CARRIED:
            src = state["slots"].get(row.source_layer, {}).get(row.param)
        if new_entries == "zero" and row.source is not None and first.get(row.source) != row.layer:
            src = None  # an extra copy of a source layer (depth by stacking): all of it is new
        # one map per param, for all its slot families
        spec = plan.targets[row.layer].param(row.param)
        gm = for_row(row, spec.roles, plan.options.fill_for(row.layer), plan.options.fill_seed, spec.size_power)
        for fam, vs in fams.items():
            var = vs[i]
            if src is None or fam not in src:
                counts["slots_zero"] += 1
                continue
            old = src[fam]
            sharding = target_sharding(var)
            if sharding is not None and not isinstance(old, np.ndarray):  # a mesh: on the devices
                counts["slots_written"] += 1
                yield var, value_on_devices(device_source(old, sharding), tuple(var.shape), sharding, dtype=var.dtype,
                                            old_split=row.old_split, new_split=row.new_split, growth=gm,
                                            power=slot_power(fam), keep_old_only=new_entries == "zero"), \
                    f"{row.target}:{fam}"
                continue
            if tuple(int(d) for d in old.shape) == tuple(var.shape):
                counts["slots_written"] += 1
                yield var, old, f"{row.target}:{fam}"  # numpy or a device array: written as it is
                continue
            old = np.asarray(tensor_view(old)) if not isinstance(old, np.ndarray) else old
            if gm is not None:
                new = gm.apply(old, fresh_value=None, power=slot_power(fam))
                if new_entries == "zero":  # old entries sit at the start of each block; resize marks them
                    kept = resize(np.ones(old.shape, bool), new.shape, old_split=row.old_split,
                                  new_split=row.new_split, fill=False)
                    new = np.where(kept, new, np.zeros((), new.dtype))
            else:
                new = resize(old, tuple(var.shape), old_split=row.old_split, new_split=row.new_split, fill=0)
            counts["slots_written"] += 1
            yield var, new.astype(np.dtype(var.dtype), copy=False), f"{row.target}:{fam}"


def transfer_optimizer(source: Any, model: Any, report: Any, *, reset: bool = False,
                       new_entries: str = "copy") -> dict[str, int]:
    """Carry optimizer state across a manual rebuild, as :func:`growstage.fit` does at a stage boundary.

    ``source``: the old model (its optimizer built) or ``optimizer_state(old_model)``; ``model``: the
    new, compiled model; ``report``: what :func:`~growstage.transfer` or :func:`~growstage.rebuild`
    returned for the params (slots follow the same plan: copied, sliced, padded with zeros, or
    mapped like their param under a function-preserving fill; ``new_entries="zero"``: new entries
    start at zero instead).  Returns counts per outcome.

    Example::

        >>> import keras, growstage
        >>> def build(n):
        ...     m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(n, name="out")])
        ...     m.compile(optimizer="adam", loss="mse")
        ...     return m
        >>> old = build(2); old.optimizer.build(old.trainable_variables)
        >>> new, report = growstage.rebuild(lambda: build(3), old, mode="subset")
        >>> growstage.transfer_optimizer(old, new, report)
        {'slots_written': 4, 'slots_zero': 0}
    """
    plan = getattr(report, "plan", None)
    if plan is None:
        raise GrowstageError("report: pass the Report that transfer() or rebuild() returned for this model "
                             f"(got {type(report).__name__})")
    if not isinstance(source, dict) and not hasattr(source, "weights"):
        raise GrowstageError(f"source: pass the old model (its optimizer built) or optimizer_state(old_model), "
                             f"not a {type(source).__name__}; slots saved in a checkpoint come back through "
                             "fit(..., checkpoint_dir=..., resume=True)")
    # a model on a mesh hands its slots over as device arrays: they are resized where they live
    state = source if isinstance(source, dict) else optimizer_state(source, device=on_mesh(source.weights))
    return transfer_optimizer_state(state, plan, model, reset=reset, new_entries=new_entries)
