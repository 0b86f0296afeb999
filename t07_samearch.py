# stages whose specs differ but whose models are the same; and equal specs; transitions' keys
import sys; sys.path.insert(0, "/tmp/attack")
from h import *
rng = np.random.default_rng(0)
x = rng.normal(size=(16, 4)).astype("f4"); y = rng.normal(size=(16, 1)).astype("f4")
def build(stage):
    d = stage.spec["d"]
    inp = keras.Input((4,)); h = inp
    for i in range(d):
        h = L.Dense(4, name=f"h{i}")(h)
        h = L.Dropout(0.1, name=f"do{i}")(h)
    return keras.Model(inp, L.Dense(1, name="out")(h))
stages = [{"spec": {"d": 1, "tag": "a"}}, {"spec": {"d": 1, "tag": "b"}, "learning_rate": 0.01},
          {"spec": {"d": 2}}, {"spec": {"d": 2}, "frozen": ["h0"]}, {"spec": {"d": 3, "tag": "x"}}]
def runner(pa):
    return gr.fit(Schedule(build, stages=stages), x, y, epochs=5, seed=0, log=None, prepare_ahead=pa, batch_size=4,
                  compile=lambda m, s: m.compile(optimizer="adam", loss="mse"))
s, a = compare(runner)
for t in a.transitions:
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in t.items() if k != "report"})
