"""The contract every artifact carries (stylexport/contract.py), checked the same way for every format."""

import pytest

from stylexport.contract import CONTRACT, artifact_metadata, check_contract
from stylexport.errors import StylexportError
from stylexport.formats import FORMATS, format_names


def meta(fmt="onnx", **changes):
    m = artifact_metadata(style_name="s", source_sha256="0" * 64, precision="fp32", fmt=fmt)
    m.update(changes)
    return m


def test_what_export_writes_passes_for_each_format():
    for fmt in FORMATS.values():
        if fmt.build:
            check_contract(meta(fmt.name), "x.json", format_names(fmt))
    m = meta("aoti-cpu")
    assert all(m[k] == v for k, v in CONTRACT.items()) and m["style_name"] == "s" and m["format"] == "aoti-cpu"


def test_artifacts_from_earlier_versions_keep_loading():
    check_contract(meta("tensorrt-plan"), "e.plan.json", format_names(FORMATS["tensorrt-fp16"]))
    check_contract(meta("aoti"), "p.pt2.json", format_names(FORMATS["aoti-cpu"]))


@pytest.mark.parametrize(("changes", "message"), [
    ({"contract_version": "2"}, "contract_version '2', this stylexport implements '1'; re-export"),
    ({"layout": "NHWC"}, "layout 'NHWC', stylexport feeds 'NCHW'"),
    ({"value_range": "0-1"}, "value_range '0-1', stylexport feeds '0-255'"),
    ({"dtype": "float16"}, "dtype 'float16', stylexport feeds 'float32'"),
    ({"format": "onnx"}, "format 'onnx' does not match the engine file "
                         "\\(expected tensorrt-fp16, tensorrt-plan, trt\\)"),
])
def test_a_mismatch_names_the_key_and_both_values(changes, message):
    with pytest.raises(StylexportError, match=message):
        check_contract(meta("tensorrt-fp16", **changes), "e.plan.json", format_names(FORMATS["tensorrt-fp16"]))


def test_a_missing_key_says_how_to_fix_it():
    m = meta()
    del m["input_name"]
    with pytest.raises(StylexportError, match="e.json has no 'input_name'; re-export the engine with stylexport"):
        check_contract(m, "e.json", ("onnx",))


def test_min_side_comes_from_the_artifact_and_a_damaged_one_is_one_line():
    from stylexport.contract import MIN_SIDE, contract_min_side

    meta = artifact_metadata(style_name="s", source_sha256="0" * 64, precision="fp32", fmt="onnx", edge_pad=32,
                             min_side=36)
    assert meta["min_side"] == "36" and meta["edge_pad"] == "32" and meta["size_rule"] == "any H, W >= 36"
    assert contract_min_side(meta) == 36 and contract_min_side({}) == MIN_SIDE  # written before min_side varied
    with pytest.raises(StylexportError, match=r"^engine metadata: min_side 'x36' is not a number; re-export the "
                                              r"engine$"):
        contract_min_side({"min_side": "x36"})
