"""Exploratory runs behind the keras_hub settings of benchmarks/lm_growth.py (results: lm_growth_tuning.json).

One model at a time, trained alone for a FLOP budget on lm_growth's task (batch 32, context 64, seed 0),
Adam (beta2 0.99, clipnorm 1), warm-up then cosine to 10% over FLOP progress; validation loss every 20 steps.

    DHF=32,4,128 TL=4 WARM=0.05 python benchmarks/lm_growth_tune.py llama 800 4,3e-3,0,1 2,3e-3,0,1

FAMILY STEPS then runs LAYERS,PEAK_LR,DROPOUT,INIT_SCALE (INIT_SCALE multiplies every kernel and embedding
after the build); the budget is STEPS steps of the TL-layer model; DHF: hidden, heads, ff.
"""
import os, sys, time, json, numpy as np, keras, keras_hub
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lm_growth import FlopProgressLR, val_loss
from growstage.lm import stdlib_corpus, windows, val_windows
fam = sys.argv[1]; steps_budget = int(sys.argv[2]); runs = sys.argv[3:]
def build(L, d, h, ff, drop):
    if fam == "gpt2":
        bb = keras_hub.models.GPT2Backbone(vocabulary_size=256, num_layers=L, num_heads=h, hidden_dim=d, intermediate_dim=ff, dropout=drop, max_sequence_length=64)
        return keras_hub.models.GPT2CausalLM(backbone=bb, preprocessor=None)
    bb = keras_hub.models.LlamaBackbone(vocabulary_size=256, num_layers=L, num_query_heads=h, num_key_value_heads=h//2, hidden_dim=d, intermediate_dim=ff, dropout=drop)
    return keras_hub.models.LlamaCausalLM(backbone=bb, preprocessor=None)
def flops(L, d, ff, B=32, T=64):
    tok = B*T; f = L*(2*tok*(4*d*d + (3 if fam=="llama" else 2)*d*ff) + 4*B*T*T*d) + 2*tok*d*256
    return 3*f
data = stdlib_corpus(3_000_000)
xv, yv = val_windows(data.val, 64, 64); XV = {"token_ids": xv, "padding_mask": np.ones_like(xv)}
D, H, FF = map(int, os.environ.get("DHF", "64,4,256").split(","))
TL = int(os.environ.get("TL", "4")); budget = steps_budget * flops(TL, D, FF)
out = {}
for r in runs:
    L, lr, drop, sc = r.split(","); L = int(L); lr = float(lr); drop = float(drop); sc = float(sc)
    keras.utils.set_random_seed(0)
    m = build(L, D, H, FF, drop)
    [v.assign(v * sc) for v in m.weights if v.path.endswith(('kernel', 'embeddings'))]
    f = flops(L, D, FF); steps = int(budget / f)
    m.compile(keras.optimizers.Adam(FlopProgressLR(lr, [(0, 0.0, f / budget)], float(os.environ.get("WARM", "0.05"))), beta_2=0.99, clipnorm=1.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0); curve = [(0, val_loss(m, XV, yv))]; t = time.time()
    for s in range(0, steps, 20):
        xs = [windows(data.train, rng, 32, 64) for _ in range(20)]
        xx = np.concatenate([a for a, b in xs]); yy = np.concatenate([b for a, b in xs])
        m.fit({"token_ids": xx, "padding_mask": np.ones_like(xx)}, yy, batch_size=32, epochs=1, verbose=0, shuffle=False)
        curve.append(((s + 20) * f / budget, val_loss(m, XV, yv)))
    out[r] = curve
    print(fam, r, "steps", steps, f"{time.time()-t:.0f}s", " ".join(f"{p:.2f}:{l:.3f}" for p, l in curve[::3]), "final", round(curve[-1][1], 4), flush=True)
json.dump(out, open(f"lm_growth_tune_{fam}_{steps_budget}.json", "w"))
