"""Degradations that turn sharp images into blurry ones, batched on torch tensors.

Each degradation is a small class with its parameter ranges. `sample(rng)` draws one sample's parameters
(a JSON-able dict, or None when a probabilistic step is skipped); `apply(x, params)` degrades a batch
(B,3,H,W in [0,1]) given one dict per sample. Blur kernels are rebuilt from their parameters alone
(`kernel_from_params`), so a manifest entry is enough to know a pair's true kernel.
"""
from __future__ import annotations

import math

import cv2
import kornia
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Degradation", "KernelBlur", "GaussianBlur", "MotionBlur", "CameraShakeBlur", "DefocusBlur",
           "Downscale", "JPEG", "GaussianNoise", "OneOf", "Pipeline", "PRESETS", "build_degradation",
           "kernel_from_params"]


class Degradation:
    """One degradation step; `p` is the probability that it is applied to a sample."""

    p: float = 1.0

    @property
    def name(self) -> str:
        return type(self).__name__

    def sample(self, rng: np.random.Generator) -> dict | None:
        if self.p < 1.0 and rng.random() >= self.p:
            return None
        return {"op": self.name, **self.sample_params(rng)}

    def sample_params(self, rng: np.random.Generator) -> dict:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, params: list[dict]) -> torch.Tensor:
        raise NotImplementedError


def _splat(points: np.ndarray, weights: np.ndarray | None = None, pad: int = 1) -> np.ndarray:
    """Rasterise sub-pixel points (N,2 as x,y) into an odd-sized, centred, normalised kernel (bilinear)."""
    pts = points - points.mean(axis=0)
    half = int(math.ceil(np.abs(pts).max(initial=0.0))) + pad
    size = 2 * half + 1
    k = np.zeros((size, size), np.float64)
    w = np.ones(len(pts)) if weights is None else weights
    xs, ys = pts[:, 0] + half, pts[:, 1] + half
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, ww in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        np.add.at(k, (y0 + dy, x0 + dx), w * ww)
    return (k / k.sum()).astype(np.float32)


class KernelBlur(Degradation):
    """A blur given by a per-sample kernel; the batch is filtered in one grouped convolution (kornia)."""

    @staticmethod
    def kernel(params: dict) -> np.ndarray:
        raise NotImplementedError

    def apply(self, x: torch.Tensor, params: list[dict]) -> torch.Tensor:
        kernels = [kernel_from_params(p) for p in params]
        size = max(k.shape[0] for k in kernels)
        stack = np.zeros((len(kernels), size, size), np.float32)
        for i, k in enumerate(kernels):
            o = (size - k.shape[0]) // 2
            stack[i, o:o + k.shape[0], o:o + k.shape[1]] = k
        border = "reflect" if min(x.shape[-2:]) > size // 2 else "replicate"
        return kornia.filters.filter2d(x, torch.from_numpy(stack).to(x), border_type=border)


class GaussianBlur(KernelBlur):
    def __init__(self, sigma=(0.5, 3.0), p=1.0):
        self.sigma, self.p = sigma, p

    def sample_params(self, rng):
        return {"sigma": float(rng.uniform(*self.sigma))}

    @staticmethod
    def kernel(params):
        s = params["sigma"]
        half = max(1, int(math.ceil(3 * s)))
        t = np.arange(-half, half + 1, dtype=np.float64)
        g = np.exp(-0.5 * (t / s) ** 2)
        k = np.outer(g, g)
        return (k / k.sum()).astype(np.float32)


class MotionBlur(KernelBlur):
    """Linear motion of `length` pixels at `angle` degrees; the segment is supersampled (anti-aliased)."""

    def __init__(self, length=(3.0, 15.0), angle=(0.0, 180.0), p=1.0):
        self.length, self.angle, self.p = length, angle, p

    def sample_params(self, rng):
        return {"length": float(rng.uniform(*self.length)), "angle": float(rng.uniform(*self.angle))}

    @staticmethod
    def kernel(params):
        length, a = params["length"], math.radians(params["angle"])
        t = np.linspace(-0.5, 0.5, max(2, int(math.ceil(length * 8))))
        pts = np.stack([t * length * math.cos(a), -t * length * math.sin(a)], axis=1)
        return _splat(pts)


class CameraShakeBlur(KernelBlur):
    """Random camera-shake trajectories after Boracchi and Foi (2012): a random walk with inertia,
    centripetal pull and occasional abrupt shakes, integrated over the exposure."""

    def __init__(self, max_length=(6.0, 24.0), p=1.0):
        self.max_length, self.p = max_length, p

    def sample_params(self, rng):
        return {"max_length": float(rng.uniform(*self.max_length)), "anxiety": float(rng.uniform(0.0, 0.1)),
                "seed": int(rng.integers(2**31))}

    @staticmethod
    def kernel(params):
        rng = np.random.default_rng(params["seed"])
        n, total, anxiety = 512, params["max_length"], params["anxiety"]
        centripetal, gaussian_term = 0.7 * rng.random(), 10 * rng.random()
        freq_big_shakes = 0.2 * rng.random()
        step = total / (n - 1)
        v = np.exp(1j * rng.uniform(0, 2 * np.pi)) * (anxiety if anxiety > 0 else step)
        x = np.zeros(n, np.complex128)
        for t in range(n - 1):
            big = 2 * v * np.exp(1j * (np.pi + (rng.random() - 0.5))) if rng.random() < freq_big_shakes * anxiety else 0
            dv = big + anxiety * (gaussian_term * (rng.standard_normal() + 1j * rng.standard_normal())
                                  - centripetal * x[t]) * step
            v = v + dv
            v = v / (abs(v) + 1e-12) * step
            x[t + 1] = x[t] + v
        return _splat(np.stack([x.real, x.imag], axis=1))


class DefocusBlur(KernelBlur):
    """Out-of-focus disk of `radius` pixels, supersampled at the rim."""

    def __init__(self, radius=(1.0, 5.0), p=1.0):
        self.radius, self.p = radius, p

    def sample_params(self, rng):
        return {"radius": float(rng.uniform(*self.radius))}

    @staticmethod
    def kernel(params):
        r, ss = params["radius"], 8
        half = int(math.ceil(r))
        t = (np.arange((2 * half + 1) * ss) + 0.5) / ss - (half + 0.5)
        inside = (t[None, :] ** 2 + t[:, None] ** 2) <= r * r
        k = inside.reshape(2 * half + 1, ss, 2 * half + 1, ss).mean(axis=(1, 3))
        return (k / k.sum()).astype(np.float32)


class Downscale(Degradation):
    """Down by `factor` (anti-aliased) and back up (bicubic), as a low-bandwidth call does."""

    def __init__(self, factor=(1.5, 4.0), p=1.0):
        self.factor, self.p = factor, p

    def sample_params(self, rng):
        return {"factor": float(rng.uniform(*self.factor))}

    def apply(self, x, params):
        h, w = x.shape[-2:]
        out = []
        for xi, p in zip(x, params):
            size = (max(1, round(h / p["factor"])), max(1, round(w / p["factor"])))
            small = F.interpolate(xi[None], size=size, mode="bilinear", antialias=True, align_corners=False)
            out.append(F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False))
        return torch.cat(out).clamp(0, 1)


class JPEG(Degradation):
    def __init__(self, quality=(20, 70), p=1.0):
        self.quality, self.p = quality, p

    def sample_params(self, rng):
        return {"quality": int(rng.integers(self.quality[0], self.quality[1] + 1))}

    def apply(self, x, params):
        arr = (x.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for a, p in zip(arr, params):
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(a[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, p["quality"]])
            out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
        return torch.from_numpy(np.stack(out).copy()).permute(0, 3, 1, 2).to(x) / 255.0


class GaussianNoise(Degradation):
    def __init__(self, sigma=(0.0, 0.03), p=1.0):
        self.sigma, self.p = sigma, p

    def sample_params(self, rng):
        return {"sigma": float(rng.uniform(*self.sigma)), "seed": int(rng.integers(2**31))}

    def apply(self, x, params):
        noise = torch.stack([torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(p["seed"])) * p["sigma"]
                             for p in params])
        return (x + noise.to(x)).clamp(0, 1)


class OneOf(Degradation):
    """Exactly one of `choices` per sample, chosen uniformly (or by `weights`)."""

    def __init__(self, *choices: Degradation, weights=None, p=1.0):
        self.choices, self.weights, self.p = choices, weights, p

    def sample(self, rng):
        if self.p < 1.0 and rng.random() >= self.p:
            return None
        return self.choices[rng.choice(len(self.choices), p=self.weights)].sample(rng)


BLURS = {cls.__name__: cls for cls in (GaussianBlur, MotionBlur, CameraShakeBlur, DefocusBlur)}


def kernel_from_params(params: dict) -> np.ndarray:
    """The exact blur kernel of one sampled blur step (its `op` and parameters)."""
    return BLURS[params["op"]].kernel(params)


class Pipeline:
    """Steps applied in order; each step is a Degradation (a OneOf counts as one step)."""

    def __init__(self, *steps: Degradation, name: str = "custom"):
        self.steps, self.name = steps, name
        self._ops: dict[str, Degradation] = {}
        for step in steps:
            for d in getattr(step, "choices", (step,)):
                self._ops[d.name] = d

    def sample(self, rng: np.random.Generator) -> list[dict]:
        """One sample's ops, in order (skipped steps left out)."""
        return [op for op in (s.sample(rng) for s in self.steps) if op is not None]

    def apply(self, x: torch.Tensor, ops: list[list[dict]]) -> torch.Tensor:
        """Degrade a batch given each sample's ops (as returned by `sample`)."""
        x = x.float()
        for i in range(max((len(o) for o in ops), default=0)):
            active = [b for b, o in enumerate(ops) if len(o) > i]
            for name in {ops[b][i]["op"] for b in active}:
                idx = [b for b in active if ops[b][i]["op"] == name]
                sel = torch.tensor(idx, device=x.device)
                x = x.index_copy(0, sel, self._ops[name].apply(x[sel], [ops[b][i] for b in idx]))
        return x.clamp(0, 1)

    def __call__(self, x: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, list[list[dict]]]:
        ops = [self.sample(rng) for _ in range(x.shape[0])]
        return self.apply(x, ops), ops


def _seed() -> Pipeline:
    return Pipeline(OneOf(GaussianBlur(), MotionBlur()), name="seed")


def _videocall() -> Pipeline:
    return Pipeline(OneOf(GaussianBlur(), MotionBlur(), CameraShakeBlur(), DefocusBlur()),
                    Downscale(p=0.7), JPEG(p=0.8), GaussianNoise(p=0.7), name="videocall")


PRESETS = {"seed": _seed, "videocall": _videocall,
           "gaussian": lambda: Pipeline(GaussianBlur(), name="gaussian"),
           "motion": lambda: Pipeline(MotionBlur(), name="motion"),
           "camera-shake": lambda: Pipeline(CameraShakeBlur(), name="camera-shake"),
           "defocus": lambda: Pipeline(DefocusBlur(), name="defocus")}


def build_degradation(preset: str) -> Pipeline:
    from ..errors import SharpkdError

    if preset not in PRESETS:
        raise SharpkdError(f"unknown degradation preset {preset!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[preset]()
