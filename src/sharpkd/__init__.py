"""sharpkd: real-time deblurring of video-call frames by small depthwise-separable U-Nets distilled from a
larger one."""
__version__ = "0.1.0"

from .errors import BadImageError, SharpkdError
from .models import build_model, load_weights, save_weights


def load(model="student", backend="torch", threads=None, **options):
    """A `Sharpener` for a shipped model's name (`sharpkd models` lists them) or a .safetensors path; `options`
    (precision, tile, tile_overlap, self_ensemble) as in `sharpkd.inference.load`."""
    from .inference import load as _load

    return _load(model, backend=backend, threads=threads, **options)
