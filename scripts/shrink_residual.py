"""Give trained residual weights a shrink (coring) at inference: the same tensors, rebuilt with `shrink=T`
(the residual soft-thresholded by T 8-bit steps, see `models.student_fast`), written with its sidecar.

    python scripts/shrink_residual.py runs/reproduce/student2/model.safetensors 3 src/sharpkd/weights/student.safetensors
"""
import sys

from sharpkd.models import build_model, load_weights, save_weights

src, threshold, dst = sys.argv[1], float(sys.argv[2]), sys.argv[3]
trained, meta = load_weights(src)
model = build_model(trained.arch_name, **{**trained.arch_kwargs, "shrink": threshold})
model.load_state_dict(trained.state_dict())
meta = {k: v for k, v in meta.items() if k not in ("arch", "arch_kwargs", "parameters")}
meta["shrink"] = {"threshold": threshold, "command": " ".join(["python scripts/shrink_residual.py", *sys.argv[1:]]),
                  "note": "applied to the trained weights (trained without it; val_metrics are the training's); "
                          "threshold chosen on suite pairs of --seed 1, reported on the suite's --seed 0"}
save_weights(model, dst, **meta)
print(f"{dst}: {model.arch_name} {model.arch_kwargs}")
