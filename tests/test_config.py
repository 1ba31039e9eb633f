import pytest

import sharpkd.sysinfo
from sharpkd.training.config import load_recipe, resolve_precision


@pytest.mark.parametrize("simd,expected", [(["avx2"], "32-true"), (["avx2", "avx512f", "avx512_bf16"], "bf16-mixed"),
                                           (["avx2", "amx_bf16", "amx_tile"], "bf16-mixed")])
def test_auto_precision_is_bf16_only_where_the_cpu_has_native_bf16(monkeypatch, simd, expected):
    monkeypatch.setattr(sharpkd.sysinfo, "hardware", lambda *a, **k: {"simd": simd})
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert resolve_precision("auto") == expected
    assert resolve_precision("32-true") == "32-true" and resolve_precision("bf16-mixed") == "bf16-mixed"


def test_recipes_resolve_auto_and_flags_override(monkeypatch):
    monkeypatch.setattr(sharpkd.sysinfo, "hardware", lambda *a, **k: {"simd": ["avx2"]})
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert load_recipe("teacher")["precision"] == "32-true"
    assert load_recipe("student_kd", overrides={"precision": "bf16-mixed"})["precision"] == "bf16-mixed"
