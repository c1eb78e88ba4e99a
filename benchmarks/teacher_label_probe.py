"""Two label-only levers that were tried and dropped (docs/benchmarks.md, session 7): a linear probe on the frozen
SmolLM2's last hidden state at an appended ``Label:`` (``K=0``), and LoRA on the top ``K`` layers with the bottom
layers frozen and their outputs cached once, trained with class-balanced CE at the ``Label:`` position only.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/teacher_label_probe.py K=0 nval=200 hint=1   # the probe
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/teacher_label_probe.py K=6 nval=200 epochs=6 # top-6 LoRA

Arguments are ``key=value``: model (``teacher.model``), K, epochs, lr, bs, maxtok, fields, r, nval, hint (the match line), threads, data,
evalset (``val``, the default, or ``logs``: a fixed sample of ``nval`` log pairs).
An exploration script (it swaps the model's layer list to run the top layers alone), kept to reproduce figures.
"""
# ruff: noqa
import sys, time, random
import torch
from sklearn.metrics import f1_score
from sklearn.linear_model import LogisticRegression
from distillery.config import load_config
from distillery.data.spec import load_pairs
from distillery.data.splits import split_pairs
from distillery.data.schema import get_label_set
from distillery.teacher.model import load_for_step
from distillery.teacher.prompt import PromptBuilder
from distillery.teacher.engine_labels import class_first_tokens
from peft import LoraConfig, get_peft_model

args = dict(a.split("=") for a in sys.argv[1:])
epochs = int(args.get("epochs", 6)); lr = float(args.get("lr", 1e-3)); bs = int(args.get("bs", 16))
maxtok = int(args.get("maxtok", 192)); fields = args.get("fields", "title,brand,attributes,description").split(",")
K = int(args.get("K", 6)); r = int(args.get("r", 16)); nval = int(args.get("nval", 300))
torch.manual_seed(0); torch.set_num_threads(int(args.get("threads", 2)))
cfg = load_config(profile="demo")
sp = split_pairs(load_pairs(args.get("data", "synthetic:3000")), cfg.data)
if "model" in args:  # another base, e.g. a saved Gemma 3 270M directory
    cfg.teacher.model = args["model"]
tok, model, meta = load_for_step(None, cfg)
ls = get_label_set(cfg.data.label_set)
pb = PromptBuilder(tok, ls, fields, maxtok, 400)
groups = class_first_tokens(tok, ls)
seed = list(sp.seed)
# evalset=logs scores a fixed sample of the log pairs (more queries than ESCI's 9 validation queries)
val = random.Random(0).sample(list(sp.logs), nval) if args.get("evalset") == "logs" else list(sp.val)[:nval]
L = model.config.num_hidden_layers
from distillery.teacher.matching import match_line
HINT = args.get("hint", "0") == "1"
def hint(p):
    return f"\n{match_line(p)}"
import dataclasses
def enc(ps):
    if HINT:
        ps = [dataclasses.replace(p, description=(p.description or "") + hint(p)) for p in ps]
    texts = [t + "Label:" for t in pb.build(ps)]
    tok.padding_side = "left"
    b = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    b["position_ids"] = (b["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    return b
layers = model.model.layers
t0 = time.time()
cache = {}
def trunk(ps, name):
    model.model.layers = layers[: L - K]
    outs = []
    cap = {}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for i in range(0, len(ps), 32):
            b = enc(ps[i:i+32])
            if K == 0:
                h = model.model(**b).last_hidden_state[:, -1].float()  # normed final state
                outs.append((h,))
            else:
                hook = layers[L-K-1].register_forward_hook(lambda m, a, o: cap.__setitem__("h", o[0] if isinstance(o, tuple) else o))
                model.model(**b); hook.remove()
                outs.append((cap["h"].to(torch.bfloat16), b["attention_mask"], b["position_ids"]))
    model.model.layers = layers
    return outs
cs = trunk(seed, "seed"); cv = trunk(val, "val")
print(f"trunk pass {time.time()-t0:.0f}s for {len(seed)+len(val)} prompts ({(time.time()-t0)/(len(seed)+len(val)):.3f} s/ex)", flush=True)
ys = torch.tensor([ls.index(p.label) for p in seed]); yv = [ls.index(p.label) for p in val]  # maps ESCI's E/S/C/I
if K == 0:
    Xs = torch.cat([o[0] for o in cs]).numpy(); Xv = torch.cat([o[0] for o in cv]).numpy()
    for C in (0.01, 0.1, 1.0, 10.0):
        clf = LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit(Xs, ys.numpy())
        print("probe C", C, "val macro-F1", f1_score(yv, clf.predict(Xv), average="macro"))
    sys.exit()
# top-K model with LoRA
model.model.layers = layers[L - K:]
model.config.num_hidden_layers = K
lcfg = LoraConfig(r=r, lora_alpha=2*r, lora_dropout=0.05, target_modules=["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"])
pm = get_peft_model(model, lcfg)
params = [p for p in pm.parameters() if p.requires_grad]
cnt = torch.bincount(ys, minlength=3).float(); w = cnt.sum() / (3 * cnt)
opt = torch.optim.AdamW(params, lr=lr)
# flatten cached batches to examples
def rows(outs):
    ex = []
    for h, m, pos in outs:
        for j in range(h.shape[0]): ex.append((h[j], m[j], pos[j]))
    return ex
es, ev = rows(cs), rows(cv)
def fwd(items):
    n = max(x[0].shape[0] for x in items)
    def padl(t, fill): return torch.cat([torch.full((n - t.shape[0],) + t.shape[1:], fill, dtype=t.dtype), t])
    h = torch.stack([padl(x[0], 0) for x in items]); m = torch.stack([padl(x[1], 0) for x in items]); p = torch.stack([padl(x[2], 0) for x in items])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lg = pm(inputs_embeds=h, attention_mask=m, position_ids=p, logits_to_keep=1, use_cache=False).logits[:, -1].float()
    return torch.stack([torch.logsumexp(lg[:, g], -1) for g in groups], -1)
def evaluate():
    pm.eval(); pr = []
    with torch.no_grad():
        for i in range(0, len(ev), 64): pr += fwd(ev[i:i+64]).argmax(-1).tolist()
    pm.train(); return f1_score(yv, pr, average="macro"), torch.bincount(torch.tensor(pr), minlength=3).tolist()
print("val before", evaluate(), flush=True)
steps = epochs * ((len(es)+bs-1)//bs); st = 0
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s+1)/(0.1*steps+1)) * max(0.0, 1 - s/steps))
for ep in range(epochs):
    idx = list(range(len(es))); random.Random(ep).shuffle(idx); te = time.time()
    for i in range(0, len(idx), bs):
        loss = torch.nn.functional.cross_entropy(fwd([es[j] for j in idx[i:i+bs]]), ys[idx[i:i+bs]], weight=w)
        loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); sched.step(); opt.zero_grad()
    tt = time.time()-te
    print(f"epoch {ep+1} {tt:.0f}s ({tt/len(es):.3f}s/ex) loss {loss.item():.3f} val {evaluate()}", flush=True)
print("total", time.time()-t0)
