"""sharpkd: real-time deblurring of video-call frames by a distilled ~20K-parameter U-Net."""
__version__ = "0.1.0"

from .errors import BadImageError, SharpkdError
from .models import build_model, load_weights, save_weights


def load(model="student", backend="torch", threads=None):
    """A `Sharpener` for shipped weights ('student', 'teacher', 'student_nokd') or a .safetensors path."""
    from .inference import load as _load

    return _load(model, backend=backend, threads=threads)
