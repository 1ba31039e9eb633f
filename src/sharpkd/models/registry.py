"""One registry of architectures: `build_model("unet")`; new variants register without touching callers."""
from __future__ import annotations

import functools
import inspect

from torch import nn

from ..errors import SharpkdError

MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str):
    """Register a class under `name`; its instances remember `arch_name` and the `arch_kwargs` they were
    built with, so that saved weights can rebuild them."""

    def add(cls):
        init = cls.__init__
        sig = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kwargs):
            init(self, *args, **kwargs)
            bound = sig.bind(self, *args, **kwargs)
            bound.apply_defaults()
            self.arch_kwargs = {k: v for k, v in list(bound.arguments.items())[1:]}

        cls.__init__ = recording_init
        cls.arch_name = name
        MODELS[name] = cls
        return cls
    return add


def build_model(name: str, **kwargs) -> nn.Module:
    if name not in MODELS:
        raise SharpkdError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](**kwargs)
    except TypeError as exc:  # an option the architecture does not have
        raise SharpkdError(f"model {name}: {exc}") from None
