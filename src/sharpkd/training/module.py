"""RestorationModule: one LightningModule for the teacher (CombinedLoss) and the student (KDLoss, with or
without the frozen teacher, whose outputs come with the batch when cached or are computed here)."""
from __future__ import annotations

import lightning as L
import torch
from torch import nn

from ..errors import SharpkdError
from ..losses import CombinedLoss, KDLoss
from ..metrics import mae, psnr, ssim


class NonFiniteError(SharpkdError):
    exit_code = 3


def saved_schedule(checkpoint: dict) -> str:
    """The kind of LR schedule (configure_optimizers below) a checkpoint was trained with."""
    state = (checkpoint.get("lr_schedulers") or [{}])[0]
    return "cosine" if "T_max" in state else "plateau"


class RestorationModule(L.LightningModule):
    def __init__(self, model: nn.Module, loss: dict, lr: float = 1e-3, lr_factor: float = 0.5,
                 lr_patience: int = 2, min_lr: float = 1e-6, teacher: nn.Module | None = None,
                 schedule: str = "plateau"):
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)
        loss = dict(loss)
        name = loss.pop("name")
        try:
            self.loss_fn = CombinedLoss(**loss) if name == "combined" else KDLoss(**loss)
        except (TypeError, ValueError) as exc:  # a key or value the loss does not take
            raise SharpkdError(f"recipe loss {name!r}: {exc}".replace("__init__() ", "")) from None
        self.teacher = teacher
        if teacher is not None:
            self.teacher = teacher.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.lr, self.lr_factor, self.lr_patience, self.min_lr = lr, lr_factor, lr_patience, min_lr
        self.schedule = schedule
        self._val_teacher: dict[int, torch.Tensor] = {}  # the fixed validation pairs' teacher outputs

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen: BatchNorm statistics and dropout stay as trained
        return self

    def on_save_checkpoint(self, checkpoint):
        # The frozen teacher comes from its own weights file: checkpoints hold the student alone (7x smaller), and
        # a run can be resumed or branched under another recipe, with a teacher or without one.
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("teacher.")}

    def on_load_checkpoint(self, checkpoint):
        state = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("teacher.")}
        if self.teacher is not None:
            state.update({f"teacher.{k}": v for k, v in self.teacher.state_dict().items()})
        checkpoint["state_dict"] = state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def _teacher(self, blurry, given=None):
        """The teacher's output: the cached one that comes with the batch, else computed here; None without a
        teacher term."""
        if given is not None:
            return given
        if self.teacher is None or not getattr(self.loss_fn, "alpha", 0):
            return None
        with torch.no_grad():
            return self.teacher(blurry.contiguous(memory_format=torch.channels_last))

    def _loss(self, pred, sharp, target_t=None, blurry=None):
        if isinstance(self.loss_fn, KDLoss):
            return self.loss_fn(pred, sharp, target_t, blurry)
        return self.loss_fn(pred, sharp, blurry)

    def training_step(self, batch, batch_idx):
        blurry, sharp, *cached = batch
        pred = self(blurry)
        loss = self._loss(pred, sharp, self._teacher(blurry, *cached), blurry)
        if not torch.isfinite(loss):
            raise NonFiniteError(f"training loss became non-finite at step {self.global_step}: stopped "
                                 "(the last good checkpoint is kept; try --precision 32-true)")
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(blurry),
                 sync_dist=True)
        return loss

    def on_before_optimizer_step(self, optimizer):
        for name, p in self.model.named_parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                raise NonFiniteError(f"non-finite gradient in {name} at step {self.global_step}: stopped "
                                     "(the last good checkpoint is kept; try --precision 32-true)")

    def validation_step(self, batch, batch_idx):
        blurry, sharp = batch
        pred = self(blurry).float().clamp(0, 1)
        n = len(blurry)
        if batch_idx not in self._val_teacher:
            self._val_teacher[batch_idx] = self._teacher(blurry)
        self.log_dict({"val_loss": self._loss(pred, sharp, self._val_teacher[batch_idx], blurry),
                       "val_ssim": ssim(pred, sharp), "val_psnr": psnr(pred, sharp), "val_mae": mae(pred, sharp)},
                      on_epoch=True, prog_bar=False, batch_size=n, sync_dist=True)  # all processes' pairs

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        if self.schedule == "cosine":  # one cosine from lr to min_lr over the run's epochs
            cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, self.trainer.max_epochs),
                                                                eta_min=self.min_lr)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine, "interval": "epoch"}}
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=self.lr_factor,
                                                           patience=self.lr_patience, min_lr=self.min_lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_ssim"}}
