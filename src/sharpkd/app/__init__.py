"""The local web app (`sharpkd serve`): Gradio UI and HTTP API over `service.AppService`."""
from .service import AppService, blur, load_model, quality


def build_app(*args, **kwargs):
    from .ui import build_app as _build

    return _build(*args, **kwargs)


def serve(*args, **kwargs):
    from .ui import serve as _serve

    return _serve(*args, **kwargs)


__all__ = ["AppService", "blur", "build_app", "load_model", "quality", "serve"]
