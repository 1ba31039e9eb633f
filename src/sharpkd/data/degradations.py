"""Degradations that turn sharp images into blurry ones, batched on torch tensors.

Each degradation is a small class with its parameter ranges. `sample(rng)` draws one sample's parameters
(a JSON-able dict, or None when a probabilistic step is skipped); `apply(x, params)` degrades a batch
(B,3,H,W in [0,1]) given one dict per sample. Blur kernels are rebuilt from their parameters alone
(`kernel_from_params`), so a manifest entry is enough to know a pair's true kernel.
"""
from __future__ import annotations

import fractions
import math

import av
import cv2
import kornia
import numpy as np
import torch

from .io import to_float

__all__ = ["Degradation", "KernelBlur", "GaussianBlur", "MotionBlur", "CameraShakeBlur", "DefocusBlur", "JPEG",
           "SensorNoise", "Transmit", "OneOf", "Pipeline", "CallPipeline", "MixedPipeline", "PRESETS",
           "build_degradation", "kernel_from_params", "h264_roundtrip"]


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


def _frames(x: torch.Tensor) -> np.ndarray:
    """A B,3,H,W batch in [0, 1] as B,H,W,3 uint8 frames for the codecs, rounded half up: the rounding every seeded
    pair and manifest was made with (`to_uint8` rounds ties to even)."""
    return (x.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _batch(frames: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """B,H,W,3 uint8 frames back to a B,3,H,W batch in [0, 1] on `like`'s device and dtype."""
    return to_float(torch.from_numpy(frames).permute(0, 3, 1, 2)).to(like)


class JPEG(Degradation):
    def __init__(self, quality=(20, 70), p=1.0):
        self.quality, self.p = quality, p

    def sample_params(self, rng):
        return {"quality": int(rng.integers(self.quality[0], self.quality[1] + 1))}

    def apply(self, x, params):
        out = []
        for a, p in zip(_frames(x), params):
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(a[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, p["quality"]])
            out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
        return _batch(np.stack(out), like=x)


class SensorNoise(Degradation):
    """Signal-dependent sensor noise (Poisson-Gaussian, Foi et al. 2008): variance `shot * x + read**2` per
    pixel, so bright pixels are noisier than dark ones; `correlation` of it shared by the three channels (a
    demosaicked, colour-processed camera's noise is partly luminance noise). Ranges as in Brooks et al. 2019
    ("Unprocessing images"), scaled to display values: shot 1e-4 to 4e-3 (log-uniform: sigma 0.007 to 0.045
    at mid-grey, good light to a dim room), read noise 0.002 to 0.015."""

    def __init__(self, shot=(1e-4, 4e-3), read=(0.002, 0.015), correlation=(0.0, 0.7), p=1.0):
        self.shot, self.read, self.correlation, self.p = shot, read, correlation, p

    def sample_params(self, rng):
        return {"shot": float(np.exp(rng.uniform(*np.log(self.shot)))), "read": float(rng.uniform(*self.read)),
                "correlation": float(rng.uniform(*self.correlation)), "seed": int(rng.integers(2**31))}

    def apply(self, x, params):
        out = []
        for xi, p in zip(x, params):
            g = torch.Generator().manual_seed(p["seed"])
            own, shared = torch.randn(xi.shape, generator=g), torch.randn((1, *xi.shape[1:]), generator=g)
            n = math.sqrt(1 - p["correlation"]) * own + math.sqrt(p["correlation"]) * shared
            sigma = (p["shot"] * xi.clamp(0, 1) + p["read"] ** 2).sqrt()
            out.append(xi + sigma * n.to(xi))
        return torch.stack(out).clamp(0, 1)


def h264_roundtrip(img: np.ndarray, crf: int, frames: int = 1, shift: int = 2) -> np.ndarray:
    """`img` (H,W,3 uint8, even sides) through libx264 and back, as a real-time sender codes it (ultrafast,
    zerolatency, 4:2:0). frames=1: an intra frame; frames>1: the last frame of a short group of pictures whose
    earlier frames are `img` shifted `shift` px per frame, so the frame returned is a motion-predicted P-frame."""
    h, w = img.shape[:2]
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base, enc.gop_size = fractions.Fraction(1, 30), frames
    enc.options = {"crf": str(crf), "preset": "ultrafast", "tune": "zerolatency", "threads": "1"}  # deterministic
    packets = []
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(img, (frames - 1 - i) * shift, axis=1)),
                                           format="rgb24")
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    dec = av.CodecContext.create("h264", "r")
    decoded = [f for pkt in packets for f in dec.decode(pkt)] + list(dec.decode(None))
    return decoded[-1].to_ndarray(format="rgb24")


def _jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]


class Transmit(Degradation):
    """A call's transmission, in the order it happens: the sender scales the frame down by `factor`
    (anti-aliased; 1 = sent at full size), codes it at that size (JPEG, or an H.264 intra frame or P-frame),
    and the receiver scales the decoded frame back up (bilinear or bicubic). Codec blocks are made at the
    sender's size and enlarged with it, as on a real call."""

    def __init__(self, factor=(1.0, 4.0), jpeg=(20, 80), crf=(23, 40), h264=0.5, gop=0.5, p=1.0):
        self.factor, self.jpeg, self.crf, self.h264, self.gop, self.p = factor, jpeg, crf, h264, gop, p

    def sample_params(self, rng):
        params = {"factor": float(rng.uniform(*self.factor)),
                  "upscale": "bicubic" if rng.random() < 0.5 else "bilinear"}
        if rng.random() < self.h264:
            params.update(codec="h264", crf=int(rng.integers(self.crf[0], self.crf[1] + 1)),
                          frames=3 if rng.random() < self.gop else 1)
        else:
            params.update(codec="jpeg", quality=int(rng.integers(self.jpeg[0], self.jpeg[1] + 1)))
        return params

    @staticmethod
    def one(img: np.ndarray, p: dict) -> np.ndarray:
        """One H,W,3 uint8 frame through the whole path; same size out."""
        h, w = img.shape[:2]
        sw, sh = max(2, round(w / p["factor"])), max(2, round(h / p["factor"]))
        if p["codec"] == "h264":
            sw, sh = sw + sw % 2, sh + sh % 2  # 4:2:0 needs even sides
        small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA) if (sw, sh) != (w, h) else img
        small = h264_roundtrip(small, p["crf"], p["frames"]) if p["codec"] == "h264" else _jpeg_roundtrip(small, p["quality"])
        up = cv2.INTER_CUBIC if p["upscale"] == "bicubic" else cv2.INTER_LINEAR
        return cv2.resize(small, (w, h), interpolation=up) if (sw, sh) != (w, h) else small

    def apply(self, x, params):
        return _batch(np.stack([self.one(a, p) for a, p in zip(_frames(x), params)]), like=x)


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


class CallPipeline(Pipeline):
    """A camera-to-call model: with probability `clean`, a good frame (`clean_steps`: mild compression alone),
    otherwise every step in order. Teaches a model to leave a good frame alone."""

    def __init__(self, *steps: Degradation, clean: float = 0.2, clean_steps: tuple = (), name: str = "call"):
        super().__init__(*steps, *clean_steps, name=name)
        self.steps, self.clean, self.clean_steps = steps, clean, clean_steps

    def sample(self, rng):
        steps = self.clean_steps if rng.random() < self.clean else self.steps
        ops = [op for op in (s.sample(rng) for s in steps) if op is not None]
        if not ops:  # no step fired (~1% of frames): an exact copy, whose PSNR (100 dB) would swamp a mean
            # PSNR, gets a good frame's compression, drawn from a generator of its own: the other pairs stay as
            # they were.
            fallback = np.random.default_rng(0)
            ops = [op for op in (s.sample(fallback) for s in self.clean_steps) if op is not None]
        return ops


class MixedPipeline(Pipeline):
    """Each sample drawn from one of `pipelines`, chosen uniformly: preset `call+seed` mixes the camera-to-call
    model with the seed's blur."""

    def __init__(self, *pipelines: Pipeline):
        super().__init__(*(step for p in pipelines for step in p.steps + getattr(p, "clean_steps", ())),
                         name="+".join(p.name for p in pipelines))
        self.pipelines = pipelines

    def sample(self, rng):
        return self.pipelines[rng.choice(len(self.pipelines))].sample(rng)


def _mild_jpeg() -> JPEG:
    """A good frame: a webcam's own JPEG/MJPEG at high quality (never the exact original, whose PSNR would be
    infinite)."""
    return JPEG(quality=(85, 95))


def _call_blur(p: float = 0.65) -> OneOf:
    """Optics and motion of a webcam, mild to strong: the seed's Gaussian and linear motion, hand-held shake,
    and a missed focus (the disk of a webcam's fixed-focus lens at arm's length)."""
    return OneOf(GaussianBlur(sigma=(0.3, 2.5)), MotionBlur(length=(2.0, 12.0)),
                 CameraShakeBlur(max_length=(4.0, 16.0)), DefocusBlur(radius=(0.8, 3.5)), p=p)


def _call() -> Pipeline:
    """Optics/motion (65% of degraded frames) -> sensor noise (70%) -> the sender's downscale 1-4x, codec at
    that size, the receiver's upscale (90%); 25% of frames are good ones (JPEG 85-95 alone)."""
    return CallPipeline(_call_blur(), SensorNoise(p=0.7), Transmit(p=0.9), clean=0.25, clean_steps=(_mild_jpeg(),))


def _seed() -> Pipeline:
    return Pipeline(OneOf(GaussianBlur(), MotionBlur()), name="seed")


PRESETS = {"seed": _seed, "call": _call,
           # benchmark families: each isolates one real condition
           "shake-noise": lambda: Pipeline(CameraShakeBlur(max_length=(4.0, 16.0)), SensorNoise(), name="shake-noise"),
           "low-bandwidth": lambda: Pipeline(Transmit(factor=(2.0, 3.0), jpeg=(20, 45), crf=(32, 40)),
                                             name="low-bandwidth"),
           "clean": lambda: Pipeline(_mild_jpeg(), name="clean")}


def build_degradation(preset: str) -> Pipeline:
    from ..errors import SharpkdError

    names = preset.split("+")
    for name in names:
        if name not in PRESETS:
            raise SharpkdError(f"unknown degradation preset {name!r}; choose from {', '.join(PRESETS)}, or join "
                               "several with + (each sample drawn from one of them)")
    return PRESETS[preset]() if len(names) == 1 else MixedPipeline(*(PRESETS[n]() for n in names))
