"""DeblurDataModule: fresh random crops and degradations for training (or `train_pairs` fixed pairs, joined by
a teacher's outputs on them when it is given one: computed once, then read from its cache), fixed seeded pairs
for validation.

`data` is a folder of sharp images (any layout; CelebA's partition file is honoured) or a folder of
paired `blur/` + `sharp/` images, read as they are."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Sampler

from ..data.datasets import (DegradeCollate, FixedPairs, PairedFolder, PairTensors, SharpCrops,
                             find_pair_folders, fixed_pair_tensors, load_images, paired_files, split_folder)
from ..data.degradations import build_degradation
from ..errors import SharpkdError
from .teacher_cache import cached_teacher_outputs

log = logging.getLogger("sharpkd")


class EpochSampler(Sampler[int]):
    """`num_samples` indices drawn afresh each epoch from `n` items, exactly as `RandomSampler` draws them.

    Not a `RandomSampler` on purpose: with several processes (--devices N) Lightning replaces a RandomSampler by
    a DistributedSampler over the whole dataset, and an epoch would become every fixed pair instead of
    epoch_size; a sampler of its own is wrapped instead, each process taking its share of these indices."""

    def __init__(self, n: int, num_samples: int):
        self.inner = RandomSampler(range(n), num_samples=num_samples)

    def __iter__(self):
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class DeblurDataModule(L.LightningDataModule):
    def __init__(self, data: str, preset: str = "seed", crop: int = 128, batch_size: int = 16,
                 epoch_size: int = 6400, val_size: int = 1600, seed: int = 0, limit_images: int | None = None,
                 num_workers: int = 1, max_side: int = 256, split_seed: int = 0, train_pairs: int = 0,
                 teacher: nn.Module | None = None, teacher_file: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike = "cache"):
        """`teacher`: its outputs on the fixed training pairs join them (cached in `cache_dir`, keyed on
        `teacher_file`, its weights)."""
        super().__init__()
        self.root = Path(data)
        if not self.root.is_dir():
            raise SharpkdError(f"{data}: not a folder")
        self.pipeline = build_degradation(preset)
        self.paired = bool(find_pair_folders(self.root))
        self.kw = dict(preset=preset, crop=crop, batch_size=batch_size, epoch_size=epoch_size, val_size=val_size,
                       seed=seed, limit_images=limit_images, num_workers=num_workers, max_side=max_side,
                       split_seed=split_seed, train_pairs=train_pairs)
        self.teacher, self.teacher_file = teacher, teacher_file
        self.cache_dir = cache_dir
        self.info: dict = {"folder": str(self.root.resolve()), "paired": self.paired, "preset": preset}
        self._prepared = False

    def setup(self, stage: str | None = None) -> None:
        if self._prepared:
            return
        k = self.kw
        if self.paired:
            train, val = paired_files(self.root, "train"), paired_files(self.root, "val")
            self.train_set = PairedFolder(train[:k["limit_images"]], crop=k["crop"], epoch_size=k["epoch_size"])
            self.val_set = PairedFolder(val[:k["limit_images"]], crop=None)
            self.info.update(train_images=len(self.train_set.pairs), val_images=len(self.val_set.pairs))
        else:
            # The data (split, fixed training and validation pairs) follow split_seed only: runs with other
            # --seed values (initialisation, order) see the same pairs, share a teacher cache, and never
            # train on the validation images.
            files = split_folder(self.root, k["split_seed"])
            train_files = files.files("train")[:k["limit_images"]]
            val_files = files.files("val")[:k["limit_images"]]
            if not train_files or not val_files:
                raise SharpkdError(f"{self.root}: need images in both splits (found {len(train_files)} train, "
                                   f"{len(val_files)} val image files)")
            train_imgs = load_images(train_files, k["max_side"], "training images")
            val_imgs = load_images(val_files, k["max_side"], "validation images")
            if not train_imgs or not val_imgs:
                raise SharpkdError(f"{self.root}: no readable image in the train or val split")
            if k["train_pairs"]:
                pairs = fixed_pair_tensors(train_imgs, self.pipeline, k["train_pairs"], size=k["crop"],
                                           seed=k["split_seed"])
                targets = [self.teacher_outputs(pairs[0])] if self.teacher is not None else []
                self.train_set = PairTensors(*pairs, *targets)
                self.info["train_pairs"] = k["train_pairs"]
            else:
                self.train_set = SharpCrops(train_imgs, size=k["crop"], epoch_size=k["epoch_size"])
            self.val_set = FixedPairs(val_imgs, self.pipeline, count=k["val_size"], size=k["crop"],
                                      seed=k["split_seed"])
            self.info.update(layout=files.layout, train_images=len(train_imgs), val_images=len(val_imgs),
                             val_pairs=k["val_size"])
        log.info("data: %s", ", ".join(f"{a}={b}" for a, b in self.info.items()))
        self._prepared = True

    @property
    def fixed_pairs(self) -> bool:
        return isinstance(self.train_set, PairTensors)

    def teacher_outputs(self, blurry: torch.Tensor) -> torch.Tensor:
        """The teacher's outputs (uint8) on the fixed training pairs' inputs, read from or added to the cache."""
        if torch.cuda.is_available():
            self.teacher.cuda()
        outputs = cached_teacher_outputs(self.teacher, self.teacher_file, blurry, self.cache_dir)
        self.teacher.cpu()
        return outputs

    def train_dataloader(self):
        w, bs = self.kw["num_workers"], self.kw["batch_size"]
        if self.fixed_pairs:  # an epoch is epoch_size pairs drawn afresh from the fixed set
            sampler = EpochSampler(len(self.train_set), num_samples=self.kw["epoch_size"])
            return DataLoader(self.train_set, batch_size=bs, sampler=sampler, num_workers=w,
                              drop_last=self.kw["epoch_size"] >= bs,
                              persistent_workers=w > 0)
        collate = None if self.paired else DegradeCollate(self.pipeline)
        return DataLoader(self.train_set, batch_size=bs, shuffle=self.paired, num_workers=w,
                          collate_fn=collate, drop_last=len(self.train_set) >= bs, persistent_workers=w > 0)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=1 if self.paired else 64, shuffle=False)
