"""Training with Lightning: the teacher, the distilled student and the no-KD ablation."""
from .datamodule import DeblurDataModule
from .module import RestorationModule
from .run import TrainOptions, run_training
