"""For test_boundary_frees.py, in a fresh process: what the first growth boundary of a process walks.

Prints two numbers: the objects the boundary's collection walks (those not frozen when the first
epoch ends) and how many of them are TensorFlow modules.
"""
import gc
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_boundary_frees import _build, _compile, _data  # noqa: E402

from growstage.train.fitting import fit  # noqa: E402
from growstage.train.schedule import Schedule  # noqa: E402


def main() -> None:
    seen = []

    def watch(epoch, model, logs):
        if epoch == 0:  # the heap the boundary's collection will walk: all but the frozen objects
            objs = gc.get_objects()
            tf = {id(m) for name, m in list(sys.modules.items()) if name.split(".")[0] == "tensorflow"}
            seen.append((len(objs), sum(id(o) in tf for o in objs)))

    x, y = _data()
    fit(Schedule(_build, stages=[1, 2]), x, y, epochs=2, seed=0, log=None, compile=_compile, batch_size=8,
        on_epoch_end=watch)
    print(*seen[0])


if __name__ == "__main__":
    main()
