import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from sharpkd.data.datasets import to_tensor
from sharpkd.losses import CombinedLoss, KDLoss, charbonnier, relative_weights
from sharpkd.metrics import mae, psnr, ssim
from sharpkd.models import build_model

from util import real_faces

C1, C2 = 0.01**2, 0.03**2


def test_losses_are_zero_on_identical_inputs():
    x = torch.rand(2, 3, 32, 32)
    assert CombinedLoss()(x, x).item() == pytest.approx(0, abs=1e-5)
    assert KDLoss()(x, x, x).item() == pytest.approx(0, abs=1e-5)


def test_charbonnier_is_l1_with_a_smooth_minimum():
    x = torch.zeros(1, 3, 16, 16)
    assert charbonnier(x, x).item() == pytest.approx(1e-3)  # eps at a perfect match
    assert charbonnier(x + 0.5, x).item() == pytest.approx(0.5, rel=1e-5)  # |error| once it dwarfs eps
    plain, with_term = CombinedLoss(0.5, 0.5), CombinedLoss(0.5, 0.5, charbonnier_weight=2.0)
    assert (with_term(x + 0.5, x) - plain(x + 0.5, x)).item() == pytest.approx(2 * charbonnier(x + 0.5, x).item())


def test_relative_combined_loss_weighs_each_frame_by_its_inputs_error():
    # Two frames, the same output error 0.1; the first frame's input was off by 0.1, the second's by 0.4: the
    # first (the better input) weighs 4x the second, and the weights have mean 1 (the loss keeps its scale).
    target = torch.zeros(2, 3, 16, 16)
    inp = torch.cat([target[:1] + 0.1, target[1:] + 0.4])
    pred = target + 0.1
    w = relative_weights(inp, target)
    assert w.tolist() == pytest.approx([1.6, 0.4], rel=1e-4)
    loss = CombinedLoss(0.0, 0.0, charbonnier_weight=1.0, relative=True)
    assert loss(pred, target, inp).item() == pytest.approx(charbonnier(pred, target).item(), rel=1e-5)
    damaged_good = torch.cat([target[:1] + 0.2, target[1:] + 0.1])  # +0.1 error on the good frame
    damaged_bad = torch.cat([target[:1] + 0.1, target[1:] + 0.2])   # +0.1 error on the bad one
    assert loss(damaged_good, target, inp).item() == pytest.approx((1.6 * 0.2 + 0.4 * 0.1) / 2, rel=1e-3)
    assert loss(damaged_bad, target, inp).item() == pytest.approx((1.6 * 0.1 + 0.4 * 0.2) / 2, rel=1e-3)
    plain = CombinedLoss(0.0, 0.0, charbonnier_weight=1.0)
    assert plain(damaged_good, target).item() == pytest.approx(plain(damaged_bad, target).item())
    with pytest.raises(ValueError, match="needs the input"):
        loss(pred, target)


def test_losses_known_values_on_constant_images():
    pred, target = torch.zeros(1, 3, 16, 16), torch.full((1, 3, 16, 16), 0.5)
    ssim_value = C1 / (0.25 + C1)  # constant images: only the luminance term differs from 1
    assert ssim(pred, target).item() == pytest.approx(ssim_value, abs=1e-6)
    assert CombinedLoss()(pred, target).item() == pytest.approx(0.5 * 0.25 + 0.5 * (1 - ssim_value), abs=1e-6)
    teacher = torch.full((1, 3, 16, 16), 0.2)
    expected = 0.7 * 0.04 + 0.3 * 0.25 + 0.1 * (1 - ssim_value)
    assert KDLoss()(pred, target, teacher).item() == pytest.approx(expected, abs=1e-6)
    assert KDLoss()(pred, target, None).item() == pytest.approx(0.3 * 0.25 + 0.1 * (1 - ssim_value), abs=1e-6)


def test_psnr_and_mae_known_values():
    pred, target = torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 0.1)
    assert psnr(pred, target).item() == pytest.approx(20.0, abs=1e-4)
    assert mae(pred, target).item() == pytest.approx(0.1, abs=1e-6)


def test_ssim_matches_scikit_image_on_real_faces():
    from sharpkd.data.degradations import build_degradation

    faces = [f[:128, :128] for f in real_faces(3)]
    sharp = to_tensor(np.stack(faces))
    blurry, _ = build_degradation("seed")(sharp, np.random.default_rng(0))
    ours = ssim(blurry, sharp, reduction=None)
    for i in range(len(faces)):
        ref = structural_similarity(blurry[i].permute(1, 2, 0).numpy(), sharp[i].permute(1, 2, 0).numpy(),
                                    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
                                    channel_axis=-1)
        assert ours[i].item() == pytest.approx(ref, abs=1e-3)
    assert 0.3 < ours.mean() < 0.99


@pytest.mark.parametrize("name", ["unet", "ds_unet"])
def test_a_few_steps_lower_each_loss(name):
    torch.manual_seed(0)
    model = build_model(name, residual=True).train()
    teacher = build_model("unet", residual=True).eval()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sharp = torch.rand(4, 3, 32, 32)
    blurry = torch.nn.functional.avg_pool2d(sharp, 5, 1, 2)
    with torch.no_grad():
        target_t = teacher(blurry)
    for loss_fn in (CombinedLoss(), lambda p, s: KDLoss()(p, s, target_t), lambda p, s: KDLoss()(p, s)):
        losses = []
        for _ in range(15):
            loss = loss_fn(model(blurry), sharp)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0]


def test_losses_and_metrics_ignore_autocast():
    """Inside a bf16-mixed training step the loss must still be computed in fp32: SSIM's variances in bf16
    are noise (a teacher trained on them darkened its outputs)."""
    torch.manual_seed(0)
    sharp = torch.rand(2, 3, 48, 48)
    blurry = torch.nn.functional.avg_pool2d(sharp, 3, 1, 1)
    reference = (CombinedLoss()(blurry, sharp).item(), KDLoss()(blurry, sharp, sharp * 0.9).item(),
                 ssim(blurry, sharp).item(), psnr(blurry, sharp).item())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = (CombinedLoss()(blurry, sharp).item(), KDLoss()(blurry, sharp, sharp * 0.9).item(),
                  ssim(blurry, sharp).item(), psnr(blurry, sharp).item())
    assert inside == pytest.approx(reference, rel=1e-6, abs=1e-6)


def test_psnr_of_a_perfect_match_is_capped():
    x = torch.rand(2, 3, 8, 8)
    assert psnr(x, x).item() == pytest.approx(100.0)
    assert psnr(x, x, reduction=None).shape == (2,)


def test_a_recipe_loss_with_an_unknown_key_is_a_one_line_error():
    from sharpkd.errors import SharpkdError
    from sharpkd.training.module import RestorationModule

    with pytest.raises(SharpkdError, match="recipe loss 'kd': .*attention"):
        RestorationModule(build_model("fast_unet"), {"name": "kd", "alpha": 0.7, "attention": 0.1})


def test_the_guarded_kd_loss_pulls_toward_the_input_where_the_teacher_is_worse():
    target = torch.full((2, 3, 16, 16), 0.5)
    inp = target + 0.1                                       # the input: 0.1 off
    teacher = torch.stack([target[0] + 0.05, target[1] + 0.3])  # better than the input, then worse
    student = torch.full_like(target, 0.5)
    chosen = KDLoss.guarded(teacher, inp, target)
    assert torch.equal(chosen[0], teacher[0]) and torch.equal(chosen[1], inp[1])
    # the student equals the ground truth: only the teacher term is left, MSE to (0.05, then 0.1)
    expected = 0.7 * (0.05 ** 2 + 0.1 ** 2) / 2
    assert KDLoss(guard=True)(student, target, teacher, inp).item() == pytest.approx(expected, rel=1e-5)
    assert KDLoss()(student, target, teacher, inp).item() == pytest.approx(0.7 * (0.05 ** 2 + 0.3 ** 2) / 2, rel=1e-5)
    with pytest.raises(ValueError):
        KDLoss(guard=True)(student, target, teacher)


def test_the_relative_kd_loss_counts_each_frame_by_its_inputs_error():
    target = torch.zeros(2, 3, 8, 8)
    inp = torch.stack([torch.full((3, 8, 8), 0.1), torch.full((3, 8, 8), 0.01)])  # a bad and a good frame
    # the student halves the bad frame's error and doubles the good frame's: under MSE a clear gain, here a loss
    student = torch.stack([torch.full((3, 8, 8), 0.05), torch.full((3, 8, 8), 0.02)])
    from sharpkd.losses import RELATIVE_FLOOR as e

    rel = KDLoss(pixel="relative", gamma=0)
    assert rel(inp, target, None, inp).item() == pytest.approx(0.3 * (0.01 / (0.01 + e) + 1e-4 / (1e-4 + e)) / 2)
    got = rel(student, target, None, inp).item()
    assert got == pytest.approx(0.3 * (0.0025 / (0.01 + e) + 4e-4 / (1e-4 + e)) / 2, rel=1e-5)
    assert KDLoss(gamma=0)(student, target).item() < KDLoss(gamma=0)(inp, target).item()
    with pytest.raises(ValueError):
        rel(student, target)
