import json

import pytest
import torch

from sharpkd.losses import CombinedLoss
from sharpkd.models import (LightStudentUNet, SelfEnsemble, TeacherUNet, build_model, count_macs, count_parameters,
                            load_weights, save_weights)
from sharpkd.errors import SharpkdError


def test_parameter_counts_match_the_seed():
    assert abs(count_parameters(TeacherUNet()) - 469_155) / 469_155 <= 0.03
    assert abs(count_parameters(LightStudentUNet()) - 20_190) / 20_190 <= 0.05
    assert abs(count_parameters(build_model("lk_unet")) - 20_190) / 20_190 <= 0.05


@pytest.mark.parametrize("name", ["unet", "unet_deep", "ds_unet", "lk_unet"])
@pytest.mark.parametrize("residual", [False, True])
def test_any_size_in_gives_same_size_out_in_unit_range(name, residual):
    torch.manual_seed(0)
    model = build_model(name, residual=residual).eval()
    for shape in [(1, 3, 37, 61), (2, 3, 1, 1), (1, 3, 5, 3)]:
        x = torch.rand(shape)
        with torch.no_grad():
            y = model(x)
        assert y.shape == x.shape
        assert y.min() >= 0 and y.max() <= 1


def test_student_full_hd_frame_channels_last_bf16():
    model = build_model("ds_unet").eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, 720, 1280).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.shape == (1, 3, 720, 1280)
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


def test_registry_rejects_unknown_names_and_records_arch():
    with pytest.raises(SharpkdError, match="unknown model"):
        build_model("resnet")
    assert build_model("ds_unet", width=8).arch_kwargs == {"width": 8, "residual": False}


def test_weights_round_trip_with_sidecar(tmp_path):
    torch.manual_seed(1)
    model = build_model("ds_unet", residual=True).eval()
    path = save_weights(model, tmp_path / "s.safetensors", epochs=3, val_metrics={"ssim": 0.5})
    loaded, meta = load_weights(path)
    assert meta["epochs"] == 3 and meta["arch"] == "ds_unet" and meta["parameters"] == count_parameters(model)
    x = torch.rand(1, 3, 16, 24)
    assert torch.equal(loaded(x), model(x))
    assert not list(tmp_path.glob("*.tmp"))


def test_weights_saved_under_the_earlier_architecture_names_still_load(tmp_path):
    """Files saved before the architectures were renamed name them the old way, in the header and the sidecar."""
    from safetensors.torch import save_file

    from sharpkd.models.weights import RENAMED_ARCHS

    x = torch.rand(1, 3, 16, 24)
    for old, new in RENAMED_ARCHS.items():
        model = build_model(new, residual=True, width=4).eval()
        path = tmp_path / f"{old}.safetensors"
        save_file(model.state_dict(), path, metadata={"arch": old, "arch_kwargs": json.dumps(model.arch_kwargs)})
        for sidecar in (None, {"arch": old, "arch_kwargs": model.arch_kwargs}):
            if sidecar:
                path.with_suffix(".json").write_text(json.dumps(sidecar))
            loaded, _ = load_weights(path)
            assert loaded.arch_name == new and torch.equal(loaded(x), model(x))


def test_missing_or_corrupt_weights_are_one_line_errors(tmp_path):
    with pytest.raises(SharpkdError, match="not found"):
        load_weights(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(SharpkdError, match="not a readable safetensors"):
        load_weights(bad)


def test_macs_count_convolutions_exactly():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1))
    conv.arch_name = "x"
    assert count_macs(conv, 10, 10) == 10 * 10 * 8 * 3 * 9
    assert count_macs(TeacherUNet(), 128, 128) > 15 * count_macs(LightStudentUNet(), 128, 128)


@pytest.mark.parametrize("name", ["ds_unet", "lk_unet"])
def test_bf16_channels_last_student_trains_with_finite_gradients(name):
    """The fast path (bf16 autocast + channels_last): 80 steps, every gradient finite. Without the fp32 dilated
    depthwise conv the bottleneck's gradients went non-finite after ~50 steps."""
    torch.manual_seed(0)
    model = build_model(name).train().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = CombinedLoss()
    sharp = torch.rand(4, 3, 32, 32)
    blurry = torch.nn.functional.avg_pool2d(sharp, 3, 1, 1).contiguous(memory_format=torch.channels_last)
    first = None
    for step in range(80):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(blurry)
        loss = loss_fn(out, sharp)
        opt.zero_grad()
        loss.backward()
        for name, p in model.named_parameters():
            assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name} at step {step}"
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first


@pytest.mark.parametrize("name", ["unet", "unet_deep", "ds_unet", "fast_unet", "lk_unet"])
def test_residual_models_start_as_the_identity(name):
    """A global-residual model starts by returning its input (zero-initialised last layer)."""
    model = build_model(name, residual=True).eval()
    x = torch.rand(1, 3, 29, 43)
    with torch.no_grad():
        assert torch.equal(model(x), x)
    assert not torch.equal(build_model(name).eval()(x), x)


def test_grown_teacher_starts_as_the_trained_teacher_and_its_new_layers_learn():
    """unet_deep holds every tensor of a trained unet: loaded into it, it returns the same frame; one
    optimiser step on a loss moves the added layers (their zero start is not a dead end)."""
    small, _ = load_weights("teacher_seed")
    grown = build_model("unet_deep", residual=True)
    missing, unexpected = grown.load_state_dict(small.state_dict(), strict=False)
    assert not unexpected and missing and all(k.split(".")[0] in {"down3", "deep", "up3", "context"} for k in missing)
    assert count_parameters(grown) > 4 * count_parameters(small)
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        assert torch.equal(grown.eval()(x), small.eval()(x))
    opt = torch.optim.Adam(grown.parameters(), lr=1e-3)
    grown.train()
    (grown(x) - x.flip(-1)).abs().mean().backward()
    assert grown.up3.weight.grad.abs().sum() > 0
    opt.step()
    with torch.no_grad():
        assert not torch.equal(grown.eval()(x), small(x))


def test_self_ensemble_averages_over_flips_and_transposes():
    """A shift to the right (not flip-equivariant) averaged with its mirror image; x8 commutes with flips and transposes."""
    shift = torch.nn.Conv2d(1, 1, (1, 3), padding=(0, 1), bias=False)
    with torch.no_grad():
        shift.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 1, 3))
    x = torch.rand(2, 1, 5, 7)
    with torch.no_grad():
        assert torch.allclose(SelfEnsemble(shift, 2)(x), (shift(x) + shift(x.flip(-1)).flip(-1)) / 2)
        assert torch.allclose(SelfEnsemble(torch.nn.Identity(), 8)(x), x)
        ens = SelfEnsemble(shift, 8)
        assert not torch.allclose(shift(x.flip(-1)), shift(x).flip(-1))
        assert torch.allclose(ens(x.flip(-1)), ens(x).flip(-1), atol=1e-6)
        assert torch.allclose(ens(x.transpose(-2, -1)), ens(x).transpose(-2, -1), atol=1e-6)
    with pytest.raises(ValueError):
        SelfEnsemble(shift, 4)


def test_shrink_drops_residual_changes_below_its_threshold():
    """`shrink=t` soft-thresholds the residual by t/255: what the same weights predict, moved t/255 towards 0."""
    torch.manual_seed(0)
    plain = build_model("fast_unet", residual=True, scale=4)
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cored = build_model("fast_unet", residual=True, scale=4, shrink=2.0)
    cored.load_state_dict(plain.state_dict())
    x = torch.full((1, 3, 32, 48), 0.5)  # mid-grey: no clamping at 0 or 1
    with torch.no_grad():
        r, rc = plain.eval()(x) - x, cored.eval()(x) - x
    t = 2.0 / 255
    assert (r.abs() > t).any() and (r.abs() < t).any()  # both sides of the threshold are exercised
    assert torch.equal(rc[r.abs() <= t], torch.zeros_like(rc[r.abs() <= t]))
    assert torch.allclose(rc, torch.sign(r) * (r.abs() - t).clamp(min=0), atol=1e-6)
    with pytest.raises(ValueError, match="residual"):
        build_model("fast_unet", shrink=2.0)  # a sigmoid output has no residual to shrink


def test_luma_student_moves_r_g_and_b_alike():
    """`luma=True`: one residual plane, added to every channel; the head writes one plane instead of three."""
    torch.manual_seed(0)
    net = build_model("fast_unet", residual=True, scale=4, width=32, luma=True, shrink=1.0).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rgb = build_model("fast_unet", residual=True, scale=4, width=32)
    assert count_parameters(net) == count_parameters(rgb) - 2 * 16 * 32 - 2  # a 4x4 transposed conv to 1 plane, not 3
    x = torch.rand(1, 3, 37, 45) * 0.5 + 0.25  # away from 0 and 1: no clamping
    with torch.no_grad():
        r = net(x) - x
    assert r.abs().max() > 0.01
    assert torch.allclose(r[:, 0], r[:, 1], atol=1e-6) and torch.allclose(r[:, 0], r[:, 2], atol=1e-6)
    with pytest.raises(ValueError, match="residual"):
        build_model("fast_unet", luma=True)
