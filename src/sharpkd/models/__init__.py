"""Architectures (one short file each), the registry, and saving/loading weights with their sidecar."""
from .common import RestorationNet, SelfEnsemble, SeparableConv, count_parameters, dihedral, pad_to_multiple
from .registry import MODELS, build_model, register_model
from .student import LightStudentUNet
from .student_fast import FastStudentUNet
from .student_lk import LargeKernelStudentUNet
from .teacher import TeacherUNet
from .teacher_deep import DeepTeacherUNet
from .weights import (describe_model, load_or_build, load_weights, model_name, resolve_weights, save_weights,
                      shipped_names, shipped_weights_path)
from .profile import count_macs
