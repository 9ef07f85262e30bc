"""FP16 without NaNs: an exact rescaling of the network, then FP16 conversion with FP32 instance norms.

Instance norm on [0,255]-scale activations overflows in FP16: a conv output above 65504 is inf, and the
variance of values above 256 overflows (x² > 65504). This is the classic cause of NaN/black outputs reported
against TensorRT, ONNX Runtime and torch2trt. Two measures, both exact in real arithmetic:

1. Instance norm is invariant to a positive scale of its input: IN(s·x) = IN(x) when its epsilon becomes
   eps·s². Every conv that feeds an instance norm is scaled (weights and bias) so its output has unit RMS on
   a calibration photo, and the norm's epsilon is scaled to match. Activations then sit near 1, far from
   FP16's limit at any image size.
2. The instance-norm nodes keep FP32 inputs, statistics and outputs (Cast nodes around them), so the
   statistics are computed in FP32 whatever the runtime does.
"""

from __future__ import annotations

from stylexport.rescale import rescale_for_fp16  # noqa: F401 - part 1, re-exported for the builders


def onnx_to_fp16(model_proto, *, keep_fp32_ops: tuple[str, ...] = ("InstanceNormalization",)):
    """FP16 weights and compute, float32 graph inputs/outputs, ``keep_fp32_ops`` computed in FP32.

    Uses ONNX Runtime's maintained converter (onnxruntime.transformers.float16).
    """
    import onnx_ir
    from onnx_ir.passes.common import TopologicalSortPass
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(model_proto, keep_io_types=True, op_block_list=list(keep_fp32_ops),
                                         disable_shape_infer=False)
    # The converter appends its input Casts at the end of the node list; the ONNX checker wants topological order.
    model = onnx_ir.from_proto(converted)
    TopologicalSortPass()(model)
    return onnx_ir.to_proto(model)
