"""Distillation throughput with the teacher run on every batch against cached teacher outputs (the two
`sharpkd distill` paths), measured in one run: prints samples/s of each and their ratio.

    python scripts/bench_kd_cache.py [--threads 2] [--steps 20]
"""
import argparse
import time

import torch

from sharpkd.losses import KDLoss
from sharpkd.models import build_model

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=torch.get_num_threads())
p.add_argument("--steps", type=int, default=20)
p.add_argument("--batch", type=int, default=32)
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
teacher = build_model("unet", residual=True).eval().to(memory_format=torch.channels_last)
student = build_model("ds_unet", residual=True).to(memory_format=torch.channels_last)
opt, loss_fn = torch.optim.Adam(student.parameters(), 1e-3), KDLoss()
x = torch.rand(args.batch, 3, 128, 128).contiguous(memory_format=torch.channels_last)
cached = torch.rand_like(x)


def step(live: bool):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        if live:
            with torch.no_grad():
                target = teacher(x)
        else:
            target = cached
        loss = loss_fn(student(x), x, target)
    opt.zero_grad()
    loss.backward()
    opt.step()


times = {True: 0.0, False: 0.0}
for live in (True, False):
    step(live)  # warm-up
for i in range(args.steps):  # interleaved, so both see the same machine load
    for live in (True, False):
        t = time.perf_counter()
        step(live)
        times[live] += time.perf_counter() - t
rate = {k: args.steps * args.batch / v for k, v in times.items()}
print(f"{args.threads} threads, batch {args.batch}, {args.steps} steps each, interleaved")
print(f"teacher on every batch: {rate[True]:.1f} samples/s")
print(f"cached teacher outputs: {rate[False]:.1f} samples/s")
print(f"ratio: {rate[False] / rate[True]:.2f}x")
