"""Digests of every registry configuration after 50 steps, taken on the code
before the one-optimizer-one-place rebuild (commit 0e90552). Kept for the record: the
golden test recomputes these through today's API and compares."""
import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import numpy as np
from registry import CASES, DTYPES, NoisyQuadratic, run

out = {}
for case in CASES:
    for dtype in DTYPES:
        for size in (33, 1023, 40000):
            problem = NoisyQuadratic(size, 50, seed=size)
            p, state = run(case, case.functional, problem, dtype, 50)
            h = hashlib.sha256(p.tobytes())
            for s in state:
                h.update(s.tobytes())
            out[f"{case.id}/{np.dtype(dtype).name}/{size}"] = h.hexdigest()[:32]
json.dump(out, open(HERE / "golden_digests.json", "w"), indent=1, sort_keys=True)
print(len(out))

# The class API (no global-norm clipping: its norm is not yet target-independent): two param groups (the second with other hyperparameters),
# mixed sizes, 50 steps, a loss for irprop+.
import fastopt
CLASS_CASES = {
    "SGD": (dict(lr=0.05, momentum=0.9, nesterov=True), dict(lr=0.02, momentum=0.5, dampening=0.1)),
    "Adagrad": (dict(lr=0.1), dict(lr=0.05, lr_decay=0.01, weight_decay=0.01)),
    "RMSprop": (dict(lr=0.01, centered=True), dict(lr=0.02, momentum=0.9)),
    "Adam": (dict(lr=0.01, amsgrad=True), dict(lr=0.02, weight_decay=0.1)),
    "AdamW": (dict(lr=0.01), dict(lr=0.02, amsgrad=True, l1=0.01)),
    "Rprop": (dict(lr=0.01, variant="irprop+"), dict(lr=0.02, variant="irprop+", etas=(0.4, 1.3))),
    "Quickprop": (dict(lr=0.05), dict(lr=0.02, momentum=0.5, mode_switch=1e-3)),
}
for name, (g0, g1) in CLASS_CASES.items():
    for dtype in DTYPES:
        problems = [NoisyQuadratic(n, 50, seed=k) for k, n in enumerate((7, 1023, 40000))]
        ps = [pr.p0.astype(dtype) for pr in problems]
        opt = getattr(fastopt.optim, name)([{"params": ps[:2], **g0}, {"params": ps[2:], **g1}])
        for t in range(1, 51):
            opt.step([pr.grad(p, t) for pr, p in zip(problems, ps)], loss=float(problems[0].losses[t - 1]))
        h = hashlib.sha256()
        for p in ps:
            h.update(p.tobytes())
        for i in sorted(dict.keys(opt.state)):
            for k in sorted(opt.state[i]):
                v = opt.state[i][k]
                h.update(v.tobytes() if isinstance(v, np.ndarray) else repr(v).encode())
        out[f"class/{name}/{np.dtype(dtype).name}"] = h.hexdigest()[:32]
json.dump(out, open(HERE / "golden_digests.json", "w"), indent=1, sort_keys=True)
print(len(out))
