"""DeblurDataModule: fresh random crops and degradations for training, fixed seeded pairs for validation.

`data` is a folder of sharp images (any layout; CelebA's partition file is honoured) or a folder of
paired `blur/` + `sharp/` images, read as they are."""
from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from ..data.datasets import (DegradeCollate, FixedPairs, PairedFolder, SharpCrops, find_pair_folders,
                             load_images, paired_files, split_folder)
from ..data.degradations import build_degradation
from ..errors import SharpkdError

log = logging.getLogger("sharpkd")


class DeblurDataModule(L.LightningDataModule):
    def __init__(self, data: str, preset: str = "seed", crop: int = 128, batch_size: int = 16,
                 epoch_size: int = 6400, val_size: int = 1600, seed: int = 0, limit_images: int | None = None,
                 num_workers: int = 1, max_side: int = 256):
        super().__init__()
        self.root = Path(data)
        if not self.root.is_dir():
            raise SharpkdError(f"{data}: not a folder")
        self.pipeline = build_degradation(preset)
        self.paired = bool(find_pair_folders(self.root))
        self.kw = dict(preset=preset, crop=crop, batch_size=batch_size, epoch_size=epoch_size, val_size=val_size,
                       seed=seed, limit_images=limit_images, num_workers=num_workers, max_side=max_side)
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
            files = split_folder(self.root, k["seed"])
            train_files = files.files("train")[:k["limit_images"]]
            val_files = files.files("val")[:k["limit_images"]]
            if not train_files or not val_files:
                raise SharpkdError(f"{self.root}: need images in both splits (found {len(train_files)} train, "
                                   f"{len(val_files)} val image files)")
            train_imgs = load_images(train_files, k["max_side"], "training images")
            val_imgs = load_images(val_files, k["max_side"], "validation images")
            if not train_imgs or not val_imgs:
                raise SharpkdError(f"{self.root}: no readable image in the train or val split")
            self.train_set = SharpCrops(train_imgs, size=k["crop"], epoch_size=k["epoch_size"])
            self.val_set = FixedPairs(val_imgs, self.pipeline, count=k["val_size"], size=k["crop"], seed=k["seed"])
            self.info.update(layout=files.layout, train_images=len(train_imgs), val_images=len(val_imgs),
                             val_pairs=k["val_size"])
        log.info("data: %s", ", ".join(f"{a}={b}" for a, b in self.info.items()))
        self._prepared = True

    def train_dataloader(self):
        w = self.kw["num_workers"]
        collate = None if self.paired else DegradeCollate(self.pipeline)
        return DataLoader(self.train_set, batch_size=self.kw["batch_size"], shuffle=self.paired, num_workers=w,
                          collate_fn=collate, drop_last=len(self.train_set) >= self.kw["batch_size"],
                          persistent_workers=w > 0)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=1 if self.paired else 64, shuffle=False)
