"""RETURNN's TF-backend stage transition for the network of transition.py, for comparison.

Builds the old network, ``get_params_serialized``, then times: new network
(``construct_from_dict``), ``initialize_params``, ``set_params_by_serialized``
(copy_param_mode "subset").  Prints one JSON line; exits 3 when returnn is not
installed.  Runs in its own process (graph mode).

    python benchmarks/returnn_transition.py --old 2 --new 3 --width 512
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def net_dict(depth: int, width: int) -> dict:
    d: dict = {}
    src: list[str] = ["data"]
    for i in range(depth):
        for direction, tag in ((1, "fw"), (-1, "bw")):
            d[f"lstm{i}_{tag}"] = {"class": "rec", "unit": "nativelstm2", "n_out": width, "direction": direction,
                                   "from": src}
        src = [f"lstm{i}_fw", f"lstm{i}_bw"]
    d["output"] = {"class": "softmax", "loss": "ce", "from": src}
    return d


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", type=int, default=2)
    ap.add_argument("--new", type=int, default=3)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    try:
        import tensorflow as tf
        from returnn.config import Config
        from returnn.tf.network import TFNetwork
    except ImportError:
        return 3
    tf.compat.v1.disable_eager_execution()
    import logging
    logging.disable(logging.INFO)
    config = Config({"extern_data": {"data": {"dim": 40}, "classes": {"dim": 1000, "sparse": True}}})
    g = tf.Graph()
    with g.as_default():
        net = TFNetwork(config=config, train_flag=True)
        net.construct_from_dict(net_dict(args.old, args.width))
        sess = tf.compat.v1.Session(graph=g)
        net.initialize_params(sess)
        params = net.get_params_serialized(sess)
    best = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        g2 = tf.Graph()
        with g2.as_default():
            net2 = TFNetwork(config=config, train_flag=True)
            net2.construct_from_dict(net_dict(args.new, args.width))
            t1 = time.perf_counter()
            sess2 = tf.compat.v1.Session(graph=g2)
            net2.initialize_params(sess2)
            t2 = time.perf_counter()
            net2.set_params_by_serialized(params, sess2, ignore_wrong_shape=True, copy_param_mode="subset")
            t3 = time.perf_counter()
            sess2.close()
        row = {"build": t1 - t0, "init": t2 - t1, "set": t3 - t2, "total": t3 - t0}
        if best is None or row["total"] < best["total"]:
            best = row
    print(json.dumps(best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
