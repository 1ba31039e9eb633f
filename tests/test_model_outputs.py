"""Every architecture keeps its parameter names and shapes and computes the same function, so that weights saved
by an earlier version of the code load and give the same output.

`model_outputs.json` holds, for every registered architecture (built with weights drawn from each parameter's
name) and for every shipped weights file (keyed by its SHA-256), the parameter layout and a fingerprint of the
output on a fixed input: eight random projections of it. A change of architecture moves them by orders of
magnitude more than the tolerance; floating-point differences between CPUs do not reach it. After an
intended change (a new architecture, new weights), rewrite the file: `python tests/test_model_outputs.py`."""
from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import pytest
import torch

from sharpkd.models import MODELS, build_model, load_weights
from sharpkd.models.weights import file_sha256, shipped_names, shipped_weights_path

REFERENCE = Path(__file__).with_name("model_outputs.json")
TOLERANCE = 1e-4
CONFIGS = [(arch, residual)
           for arch in ("unet", "unet_deep", "ds_unet", "fast_unet", "lk_unet")
           for residual in (False, True)]


def _input() -> torch.Tensor:
    return torch.rand(1, 3, 21, 30, generator=torch.Generator().manual_seed(0))  # not a multiple of 8: pads


def _smooth_input() -> torch.Tensor:
    """A soft picture of the same size for the shipped weights: a cored student leaves pixel noise as it is, so
    its fingerprint on `_input()` would be the input's whatever its weights."""
    coarse = torch.rand(1, 3, 6, 8, generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.interpolate(coarse, size=(21, 30), mode="bilinear", align_corners=False)


def _layout(model: torch.nn.Module) -> str:
    """A digest of the state dict's names, shapes and dtypes: what decides whether saved weights load."""
    text = ";".join(f"{k}:{tuple(v.shape)}:{v.dtype}" for k, v in model.state_dict().items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fingerprint(model: torch.nn.Module, x: torch.Tensor) -> list[float]:
    with torch.inference_mode():
        out = model.eval()(x).flatten().double()
    proj = torch.randn(out.numel(), 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return [round(v, 7) for v in (out @ proj / out.numel() ** 0.5).tolist()]


def _named_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Weights drawn from a generator seeded by each parameter's name: independent of construction order."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
                t.copy_(0.2 * torch.randn(t.shape, generator=g) + (1.0 if name.endswith("running_var") else 0.0))
    return model


def _architecture_entry(arch: str, residual: bool) -> dict:
    model = _named_weights(build_model(arch, residual=residual))
    return {"layout": _layout(model), "output": _fingerprint(model, _input())}


def _shipped_entry(name: str) -> dict:
    model, _ = load_weights(name)
    return {"name": name, "layout": _layout(model), "output": _fingerprint(model, _smooth_input())}


def _reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("arch,residual", CONFIGS)
def test_architecture_is_unchanged(arch, residual):
    ref = _reference()["architectures"][f"{arch}{'_residual' if residual else ''}"]
    got = _architecture_entry(arch, residual)
    assert got["layout"] == ref["layout"], "parameter names or shapes changed: saved weights would not load"
    assert max(abs(a - b) for a, b in zip(got["output"], ref["output"])) <= TOLERANCE


def test_every_registered_architecture_has_a_reference():
    assert {a for a, _ in CONFIGS} == set(MODELS)


@pytest.mark.parametrize("name", shipped_names())
def test_shipped_weights_give_the_recorded_output(name):
    sha = file_sha256(shipped_weights_path(name))
    ref = _reference()["weights"].get(sha)
    if ref is None:
        pytest.skip(f"{name}: weights not in {REFERENCE.name} (new weights: rewrite it)")
    got = _shipped_entry(name)
    assert got["layout"] == ref["layout"]
    assert max(abs(a - b) for a, b in zip(got["output"], ref["output"])) <= TOLERANCE


if __name__ == "__main__":
    data = {"architectures": {f"{a}{'_residual' if r else ''}": _architecture_entry(a, r) for a, r in CONFIGS},
            "weights": {file_sha256(shipped_weights_path(n)): _shipped_entry(n) for n in shipped_names()}}
    REFERENCE.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {REFERENCE}: {len(data['architectures'])} architectures, {len(data['weights'])} weights files")
