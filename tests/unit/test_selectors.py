from __future__ import annotations

import pytest

from fleetbuild.errors import UsageError
from fleetbuild.config.selectors import Selector, expand_braces

IDS = ["resnet/t4/fp16", "resnet/t4/int8", "resnet/nano/fp16", "yolo/orin/int8+dla", "yolo/a100/fp32"]


@pytest.mark.parametrize("pattern,expected", [
    ("a{b,c}d", ["abd", "acd"]),
    ("{a,b}/{c,d}", ["a/c", "a/d", "b/c", "b/d"]),
    ("x{a,{b,c}}", ["xa", "xb", "xc"]),
    ("plain", ["plain"]),
    ("{,pre}fix", ["fix", "prefix"]),
])
def test_brace_expansion(pattern, expected):
    assert expand_braces(pattern) == expected


@pytest.mark.parametrize("only,skip,expected", [
    (["resnet/*"], [], IDS[:3]),
    (["*/{t4,orin}/*"], [], ["resnet/t4/fp16", "resnet/t4/int8", "yolo/orin/int8+dla"]),
    (["int8"], [], ["resnet/t4/int8", "yolo/orin/int8+dla"]),      # a component: precision
    (["dla"], [], ["yolo/orin/int8+dla"]),                           # a component: variant
    (["nano"], [], ["resnet/nano/fp16"]),                             # a component: target
    ([], ["resnet"], ["yolo/orin/int8+dla", "yolo/a100/fp32"]),
    (["resnet/*"], ["*/t4/int8"], ["resnet/t4/fp16", "resnet/nano/fp16"]),
    (["fp?6"], [], ["resnet/t4/fp16", "resnet/nano/fp16"]),
    (["*"], [], IDS),
])
def test_selection(only, skip, expected):
    assert Selector(only, skip).apply(IDS, key=str) == expected


def test_component_pattern_does_not_match_substrings():
    with pytest.raises(UsageError, match="--only 'res' matches no job"):
        Selector(["res"]).apply(IDS, key=str)
