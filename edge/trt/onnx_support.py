"""Which ONNX operators and tensor types the TensorRT ONNX parser takes, per TensorRT generation (a data table).

Transcribed from onnx-tensorrt `docs/operators.md` (github.com/onnx/onnx-tensorrt, Apache-2.0), one block per branch:

| generation | branch | commit | JetPack |
|---|---|---|---|
| 8.5 | 8.5-GA | fdeeaca87ad2eef316aafb016e1822502f383eea (2023-03-10) | 5.1.x |
| 8.6 | 8.6-GA | ee0b139bc68567a89618c1d84dcd461cc144aad4 (2024-04-04) | 6.0 |
| 10 | 10.1-GA | 96e781103cfc4adf4a6bb557e94bac8e693f6f4c (2024-06-17) | 6.1 / 6.2 (TensorRT 10.3) |

One line per operator: its name, then the "Supported Types" column, or `-` where the "Supported" column says N.
Corrections of the source: 10.1-GA's ConstantOfShape lists "INF64", read as INT64. Notes of the same documents
that apply to every row: 8.x casts INT64 down to INT32 and DOUBLE down to FLOAT ("limited support"); 10.x casts
DOUBLE down to FLOAT; opsets 1-17 (8.x) and 9-20 (10.x). The "Restrictions" column and TensorRT's explicit-
quantization rules are checked by `edge.trt.lint`, which cites them rule by rule.
"""

from __future__ import annotations

from ckd.errors import CKDError

GENERATIONS: tuple[str, ...] = ("8.5", "8.6", "10")
OPSETS: dict[str, tuple[int, int]] = {"8.5": (1, 17), "8.6": (1, 17), "10": (9, 20)}
# 8.x: "TensorRT will attempt to cast down INT64 to INT32 and DOUBLE down to FLOAT"; 10.x: only DOUBLE.
CAST_DOWN: dict[str, dict[str, str]] = {
    "8.5": {"INT64": "INT32", "DOUBLE": "FP32"},
    "8.6": {"INT64": "INT32", "DOUBLE": "FP32"},
    "10": {"DOUBLE": "FP32"},
}

_TABLE = {
    "8.5": """
Abs FP32 FP16 INT32
Acos FP32 FP16
Acosh FP32 FP16
Add FP32 FP16 INT32
And BOOL
ArgMax FP32 FP16
ArgMin FP32 FP16
Asin FP32 FP16
Asinh FP32 FP16
Atan FP32 FP16
Atanh FP32 FP16
AveragePool FP32 FP16 INT8 INT32
BatchNormalization FP32 FP16
Bernoulli -
BitShift -
BlackmanWindow -
Cast FP32 FP16 INT32 INT8 BOOL
Ceil FP32 FP16
Celu FP32 FP16
Clip FP32 FP16 INT8
Compress -
Concat FP32 FP16 INT32 INT8 BOOL
ConcatFromSequence -
Constant FP32 FP16 INT32 INT8 BOOL
ConstantOfShape FP32
Conv FP32 FP16 INT8
ConvInteger -
ConvTranspose FP32 FP16 INT8
Cos FP32 FP16
Cosh FP32 FP16
CumSum FP32 FP16
DFT -
DepthToSpace FP32 FP16 INT32
DequantizeLinear INT8
Det -
Div FP32 FP16 INT32
Dropout FP32 FP16
DynamicQuantizeLinear -
Einsum FP32 FP16
Elu FP32 FP16 INT8
Equal FP32 FP16 INT32
Erf FP32 FP16
Exp FP32 FP16
Expand FP32 FP16 INT32 BOOL
EyeLike FP32 FP16 INT32 BOOL
Flatten FP32 FP16 INT32 BOOL
Floor FP32 FP16
Gather FP32 FP16 INT8 INT32 BOOL
GatherElements FP32 FP16 INT8 INT32 BOOL
GatherND FP32 FP16 INT8 INT32 BOOL
Gemm FP32 FP16 INT8
GlobalAveragePool FP32 FP16 INT8
GlobalLpPool FP32 FP16 INT8
GlobalMaxPool FP32 FP16 INT8
Greater FP32 FP16 INT32
GreaterOrEqual FP32 FP16 INT32
GridSample FP32 FP16
GRU FP32 FP16
HammingWindow -
HannWindow -
HardSwish FP32 FP16 INT8
HardSigmoid FP32 FP16 INT8
Hardmax -
Identity FP32 FP16 INT32 INT8 BOOL
If FP32 FP16 INT32 BOOL
ImageScaler FP32 FP16
InstanceNormalization FP32 FP16
IsInf -
IsNaN FP32 FP16 INT32
LayerNormalization -
LeakyRelu FP32 FP16 INT8
Less FP32 FP16 INT32
LessOrEqual FP32 FP16 INT32
Log FP32 FP16
LogSoftmax FP32 FP16
Loop FP32 FP16 INT32 BOOL
LRN FP32 FP16
LSTM FP32 FP16
LpNormalization FP32 FP16
LpPool FP32 FP16 INT8
MatMul FP32 FP16
MatMulInteger -
Max FP32 FP16 INT32
MaxPool FP32 FP16 INT8
MaxRoiPool -
MaxUnpool -
Mean FP32 FP16 INT32
MeanVarianceNormalization FP32 FP16
MelWeightMatrix -
Min FP32 FP16 INT32
Mod FP32 FP16 INT32
Mul FP32 FP16 INT32
Multinomial -
Neg FP32 FP16 INT32
NegativeLogLikelihoodLoss -
NonMaxSuppression FP32 FP16
NonZero FP32 FP16
Not BOOL
OneHot FP32 FP16 INT32 BOOL
Optional -
OptionalGetElement -
OptionalHasElement -
Or BOOL
Pad FP32 FP16 INT8 INT32
ParametricSoftplus FP32 FP16 INT8
Pow FP32 FP16
PRelu FP32 FP16 INT8
QLinearConv -
QLinearMatMul -
QuantizeLinear FP32 FP16
RandomNormal FP32 FP16
RandomNormalLike FP32 FP16
RandomUniform FP32 FP16
RandomUniformLike FP32 FP16
Range FP32 FP16 INT32
Reciprocal FP32 FP16
ReduceL1 FP32 FP16
ReduceL2 FP32 FP16
ReduceLogSum FP32 FP16
ReduceLogSumExp FP32 FP16
ReduceMax FP32 FP16
ReduceMean FP32 FP16
ReduceMin FP32 FP16
ReduceProd FP32 FP16
ReduceSum FP32 FP16
ReduceSumSquare FP32 FP16
Relu FP32 FP16 INT8
Reshape FP32 FP16 INT32 INT8 BOOL
Resize FP32 FP16
ReverseSequence FP32 FP16
RNN FP32 FP16
RoiAlign FP32 FP16
Round FP32 FP16 INT8
STFT -
ScaledTanh FP32 FP16 INT8
Scan FP32 FP16
Scatter FP32 FP16 INT8 INT32
ScatterElements FP32 FP16 INT8 INT32
ScatterND FP32 FP16 INT8 INT32
Selu FP32 FP16 INT8
SequenceAt -
SequenceConstruct -
SequenceEmpty -
SequenceErase -
SequenceInsert -
SequenceLength -
SequenceMap -
Shape FP32 FP16 INT32 INT8 BOOL
Shrink FP32 FP16 INT32
Sigmoid FP32 FP16 INT8
Sign FP32 FP16 INT8 INT32
Sin FP32 FP16
Sinh FP32 FP16
Size FP32 FP16 INT32 INT8 BOOL
Slice FP32 FP16 INT32 INT8 BOOL
Softmax FP32 FP16
SoftmaxCrossEntropyLoss -
Softplus FP32 FP16 INT8
Softsign FP32 FP16 INT8
SpaceToDepth FP32 FP16 INT32
Split FP32 FP16 INT32 BOOL
SplitToSequence -
Sqrt FP32 FP16
Squeeze FP32 FP16 INT32 INT8 BOOL
StringNormalizer -
Sub FP32 FP16 INT32
Sum FP32 FP16 INT32
Tan FP32 FP16
Tanh FP32 FP16 INT8
TfIdfVectorizer -
ThresholdedRelu FP32 FP16 INT8
Tile FP32 FP16 INT32 BOOL
TopK FP32 FP16
Transpose FP32 FP16 INT32 INT8 BOOL
Trilu FP32 FP16 INT32 INT8 BOOL
Unique -
Unsqueeze FP32 FP16 INT32 INT8 BOOL
Upsample FP32 FP16
Where FP32 FP16 INT32 BOOL
Xor BOOL
""",
    "8.6": """
Abs FP32 FP16 INT32
Acos FP32 FP16
Acosh FP32 FP16
Add FP32 FP16 INT32
And BOOL
ArgMax FP32 FP16 INT32
ArgMin FP32 FP16 INT32
Asin FP32 FP16
Asinh FP32 FP16
Atan FP32 FP16
Atanh FP32 FP16
AveragePool FP32 FP16 INT8 INT32
BatchNormalization FP32 FP16
Bernoulli -
BitShift -
BlackmanWindow -
Cast FP32 FP16 INT32 INT8 UINT8 BOOL
Ceil FP32 FP16
Celu FP32 FP16
Clip FP32 FP16 INT8
Compress -
Concat FP32 FP16 INT32 INT8 BOOL
ConcatFromSequence -
Constant FP32 FP16 INT32 INT8 BOOL
ConstantOfShape FP32
Conv FP32 FP16 INT8
ConvInteger -
ConvTranspose FP32 FP16 INT8
Cos FP32 FP16
Cosh FP32 FP16
CumSum FP32 FP16
DFT -
DepthToSpace FP32 FP16 INT32
DequantizeLinear INT8
Det -
Div FP32 FP16 INT32
Dropout FP32 FP16
DynamicQuantizeLinear -
Einsum FP32 FP16
Elu FP32 FP16 INT8
Equal FP32 FP16 INT32
Erf FP32 FP16
Exp FP32 FP16
Expand FP32 FP16 INT32 BOOL
EyeLike FP32 FP16 INT32 BOOL
Flatten FP32 FP16 INT32 BOOL
Floor FP32 FP16
Gather FP32 FP16 INT8 INT32 BOOL
GatherElements FP32 FP16 INT8 INT32 BOOL
GatherND FP32 FP16 INT8 INT32 BOOL
Gemm FP32 FP16 INT8
GlobalAveragePool FP32 FP16 INT8
GlobalLpPool FP32 FP16 INT8
GlobalMaxPool FP32 FP16 INT8
Greater FP32 FP16 INT32
GreaterOrEqual FP32 FP16 INT32
GridSample FP32 FP16
GroupNormalization FP32 FP16
GRU FP32 FP16
HammingWindow -
HannWindow -
HardSwish FP32 FP16 INT8
HardSigmoid FP32 FP16 INT8
Hardmax -
Identity FP32 FP16 INT32 INT8 BOOL
If FP32 FP16 INT32 BOOL
ImageScaler FP32 FP16
InstanceNormalization FP32 FP16
IsInf FP32 FP16
IsNaN FP32 FP16 INT32
LayerNormalization FP32 FP16
LeakyRelu FP32 FP16 INT8
Less FP32 FP16 INT32
LessOrEqual FP32 FP16 INT32
Log FP32 FP16
LogSoftmax FP32 FP16
Loop FP32 FP16 INT32 BOOL
LRN FP32 FP16
LSTM FP32 FP16
LpNormalization FP32 FP16
LpPool FP32 FP16 INT8
MatMul FP32 FP16
MatMulInteger -
Max FP32 FP16 INT32
MaxPool FP32 FP16 INT8
MaxRoiPool -
MaxUnpool -
Mean FP32 FP16 INT32
MeanVarianceNormalization FP32 FP16
MelWeightMatrix -
Min FP32 FP16 INT32
Mod FP32 FP16 INT32
Mul FP32 FP16 INT32
Multinomial -
Neg FP32 FP16 INT32
NegativeLogLikelihoodLoss -
NonMaxSuppression FP32 FP16
NonZero FP32 FP16
Not BOOL
OneHot FP32 FP16 INT32 BOOL
Optional -
OptionalGetElement -
OptionalHasElement -
Or BOOL
Pad FP32 FP16 INT8 INT32
ParametricSoftplus FP32 FP16 INT8
Pow FP32 FP16
PRelu FP32 FP16 INT8
QLinearConv -
QLinearMatMul -
QuantizeLinear FP32 FP16
RandomNormal FP32 FP16
RandomNormalLike FP32 FP16
RandomUniform FP32 FP16
RandomUniformLike FP32 FP16
Range FP32 FP16 INT32
Reciprocal FP32 FP16
ReduceL1 FP32 FP16
ReduceL2 FP32 FP16
ReduceLogSum FP32 FP16
ReduceLogSumExp FP32 FP16
ReduceMax FP32 FP16
ReduceMean FP32 FP16
ReduceMin FP32 FP16
ReduceProd FP32 FP16
ReduceSum FP32 FP16
ReduceSumSquare FP32 FP16
Relu FP32 FP16 INT8
Reshape FP32 FP16 INT32 INT8 BOOL
Resize FP32 FP16
ReverseSequence FP32 FP16 INT32 INT8 BOOL
RNN FP32 FP16
RoiAlign FP32 FP16
Round FP32 FP16 INT8
STFT -
ScaledTanh FP32 FP16 INT8
Scan FP32 FP16
Scatter FP32 FP16 INT8 INT32
ScatterElements FP32 FP16 INT8 INT32
ScatterND FP32 FP16 INT8 INT32
Selu FP32 FP16 INT8
SequenceAt -
SequenceConstruct -
SequenceEmpty -
SequenceErase -
SequenceInsert -
SequenceLength -
SequenceMap -
Shape FP32 FP16 INT32 INT8 BOOL
Shrink FP32 FP16 INT32
Sigmoid FP32 FP16 INT8
Sign FP32 FP16 INT8 INT32
Sin FP32 FP16
Sinh FP32 FP16
Size FP32 FP16 INT32 INT8 BOOL
Slice FP32 FP16 INT32 INT8 BOOL
Softmax FP32 FP16
SoftmaxCrossEntropyLoss -
Softplus FP32 FP16 INT8
Softsign FP32 FP16 INT8
SpaceToDepth FP32 FP16 INT32
Split FP32 FP16 INT32 BOOL
SplitToSequence -
Sqrt FP32 FP16
Squeeze FP32 FP16 INT32 INT8 BOOL
StringNormalizer -
Sub FP32 FP16 INT32
Sum FP32 FP16 INT32
Tan FP32 FP16
Tanh FP32 FP16 INT8
TfIdfVectorizer -
ThresholdedRelu FP32 FP16 INT8
Tile FP32 FP16 INT32 BOOL
TopK FP32 FP16 INT32
Transpose FP32 FP16 INT32 INT8 BOOL
Trilu FP32 FP16 INT32 INT8 BOOL
Unique -
Unsqueeze FP32 FP16 INT32 INT8 BOOL
Upsample FP32 FP16
Where FP32 FP16 INT32 BOOL
Xor BOOL
""",
    "10": """
Abs FP32 FP16 BF16 INT32 INT64
Acos FP32 FP16 BF16
Acosh FP32 FP16 BF16
Add FP32 FP16 BF16 INT32 INT64
AffineGrid -
And BOOL
ArgMax FP32 FP16 BF16 INT32 INT64
ArgMin FP32 FP16 BF16 INT32 INT64
Asin FP32 FP16 BF16
Asinh FP32 FP16 BF16
Atan FP32 FP16 BF16
Atanh FP32 FP16 BF16
AveragePool FP32 FP16 BF16
BatchNormalization FP32 FP16 BF16
Bernoulli -
BitShift -
BitwiseAnd -
BitwiseNot -
BitwiseOr -
BitwiseXor -
BlackmanWindow -
Cast FP32 FP16 BF16 INT32 INT64 UINT8 BOOL
CastLike FP32 FP16 BF16 INT32 INT64 UINT8 BOOL
Ceil FP32 FP16 BF16
Col2Im -
Celu FP32 FP16 BF16
CenterCropPad -
Clip FP32 FP16 BF16
Compress -
Concat FP32 FP16 BF16 INT32 INT64 BOOL
ConcatFromSequence -
Constant FP32 FP16 BF16 INT32 INT64 BOOL
ConstantOfShape FP32 FP16 BF16 INT32 INT64 BOOL
Conv FP32 FP16 BF16
ConvInteger -
ConvTranspose FP32 FP16 BF16
Cos FP32 FP16 BF16
Cosh FP32 FP16 BF16
CumSum FP32 FP16 BF16
DFT -
DeformConv FP32 FP16
DepthToSpace FP32 FP16 BF16 INT32 INT64
DequantizeLinear INT8 FP8 INT4
Det -
Div FP32 FP16 BF16 INT32 INT64
Dropout FP32 FP16 BF16
DynamicQuantizeLinear -
Einsum FP32 FP16 BF16
Elu FP32 FP16 BF16
Equal FP32 FP16 BF16 INT32 INT64
Erf FP32 FP16 BF16
Exp FP32 FP16 BF16
Expand FP32 FP16 BF16 INT32 INT64 BOOL
EyeLike FP32 FP16 BF16 INT32 INT64 BOOL
Flatten FP32 FP16 BF16 INT32 INT64 BOOL
Floor FP32 FP16 BF16
Gather FP32 FP16 BF16 INT32 INT64 BOOL
GatherElements FP32 FP16 BF16 INT32 INT64 BOOL
GatherND FP32 FP16 BF16 INT32 INT64 BOOL
Gelu FP32 FP16 BF16 INT8 INT32 INT64
Gemm FP32 FP16 BF16
GlobalAveragePool FP32 FP16 BF16
GlobalLpPool FP32 FP16 BF16
GlobalMaxPool FP32 FP16 BF16
Greater FP32 FP16 BF16 INT32 INT64
GreaterOrEqual FP32 FP16 BF16 INT32 INT64
GridSample FP32 FP16
GroupNormalization FP32 FP16 BF16
GRU FP32 FP16 BF16
HammingWindow -
HannWindow -
HardSigmoid FP32 FP16 BF16
HardSwish FP32 FP16 BF16
Hardmax FP32 FP16 BF16
Identity FP32 FP16 BF16 INT32 INT64 BOOL
If FP32 FP16 BF16 INT32 INT64 BOOL
ImageScaler FP32 FP16 BF16
ImageDecoder -
InstanceNormalization FP32 FP16 BF16
IsInf FP32 FP16 BF16
IsNaN FP32 FP16 BF16 INT32 INT64
LayerNormalization FP32 FP16 BF16
LeakyRelu FP32 FP16 BF16
Less FP32 FP16 BF16 INT32 INT64
LessOrEqual FP32 FP16 BF16 INT32 INT64
Log FP32 FP16 BF16
LogSoftmax FP32 FP16 BF16
Loop FP32 FP16 BF16 INT32 INT64 BOOL
LRN FP32 FP16 BF16
LSTM FP32 FP16 BF16
LpNormalization FP32 FP16 BF16
LpPool FP32 FP16 BF16
MatMul FP32 FP16 BF16
MatMulInteger -
Max FP32 FP16 BF16 INT32 INT64
MaxPool FP32 FP16 BF16
MaxRoiPool -
MaxUnpool -
Mean FP32 FP16 BF16 FP8 INT32 INT64
MeanVarianceNormalization FP32 FP16 BF16
MelWeightMatrix -
Min FP32 FP16 BF16 INT32 INT64
Mish FP32 FP16
Mod FP32 FP16 BF16 INT32 INT64
Mul FP32 FP16 BF16 INT32 INT64
Multinomial -
Neg FP32 FP16 BF16 INT32 INT64
NegativeLogLikelihoodLoss -
NonMaxSuppression FP32 FP16
NonZero FP32 FP16
Not BOOL
OneHot FP32 FP16 BF16 INT32 INT64 BOOL
Optional -
OptionalGetElement -
OptionalHasElement -
Or BOOL
Pad FP32 FP16 BF16 INT32 INT64
ParametricSoftplus FP32 FP16 BF16
Pow FP32 FP16 BF16
PRelu FP32 FP16 BF16
QLinearConv -
QLinearMatMul -
QuantizeLinear FP32 FP16 BF16
RandomNormal FP32 FP16 BF16
RandomNormalLike FP32 FP16 BF16
RandomUniform FP32 FP16 BF16
RandomUniformLike FP32 FP16 BF16
Range FP32 FP16 BF16 INT32 INT64
Reciprocal FP32 FP16 BF16
ReduceL1 FP32 FP16 BF16 INT32 INT64
ReduceL2 FP32 FP16 BF16 INT32 INT64
ReduceLogSum FP32 FP16 BF16 INT32 INT64
ReduceLogSumExp FP32 FP16 BF16 INT32 INT64
ReduceMax FP32 FP16 BF16 INT32 INT64
ReduceMean FP32 FP16 BF16 INT32 INT64
ReduceMin FP32 FP16 BF16 INT32 INT64
ReduceProd FP32 FP16 BF16 INT32 INT64
ReduceSum FP32 FP16 BF16 INT32 INT64
ReduceSumSquare FP32 FP16 BF16 INT32 INT64
RegexFullMatch -
Relu FP32 FP16 BF16 INT32 INT64
Reshape FP32 FP16 BF16 INT32 INT64 BOOL
Resize FP32 FP16 BF16
ReverseSequence FP32 FP16 BF16 INT32 INT64 BOOL
RNN FP32 FP16 BF16
RoiAlign FP32 FP16
Round FP32 FP16 BF16
STFT -
ScaledTanh FP32 FP16 BF16
Scan FP32 FP16 BF16
Scatter FP32 FP16 BF16 INT32 INT64
ScatterElements FP32 FP16 BF16 INT32 INT64
ScatterND FP32 FP16 BF16 INT32 INT64
Selu FP32 FP16 BF16
SequenceAt -
SequenceConstruct -
SequenceEmpty -
SequenceErase -
SequenceInsert -
SequenceLength -
SequenceMap -
Shape FP32 FP16 BF16 INT32 INT64 BOOL
Shrink FP32 FP16 BF16 INT32 INT64
Sigmoid FP32 FP16 BF16
Sign FP32 FP16 BF16 INT32 INT64
Sin FP32 FP16 BF16
Sinh FP32 FP16 BF16
Size FP32 FP16 BF16 INT32 INT64 BOOL
Slice FP32 FP16 BF16 INT32 INT64 BOOL
Softmax FP32 FP16 BF16
SoftmaxCrossEntropyLoss -
Softplus FP32 FP16 BF16
Softsign FP32 FP16 BF16
SpaceToDepth FP32 FP16 BF16 INT32 INT64
Split FP32 FP16 BF16 INT32 INT64 BOOL
SplitToSequence -
Sqrt FP32 FP16 BF16
Squeeze FP32 FP16 BF16 INT32 INT64 BOOL
StringConcat -
StringNormalizer -
StringSplit -
Sub FP32 FP16 BF16 INT32 INT64
Sum FP32 FP16 BF16 INT32 INT64
Tan FP32 FP16 BF16
Tanh FP32 FP16 BF16
TfIdfVectorizer -
ThresholdedRelu FP32 FP16 BF16
Tile FP32 FP16 BF16 INT32 INT64 BOOL
TopK FP32 FP16 BF16 INT32 INT64
Transpose FP32 FP16 BF16 INT32 INT64 BOOL
Trilu FP32 FP16 BF16 INT32 INT64 BOOL
Unique -
Unsqueeze FP32 FP16 BF16 INT32 INT64 BOOL
Upsample FP32 FP16 BF16
Where FP32 FP16 BF16 INT32 INT64 BOOL
Xor BOOL
""",
}


def _parse(block: str) -> dict[str, frozenset[str] | None]:
    ops: dict[str, frozenset[str] | None] = {}
    for line in block.strip().splitlines():
        name, *types = line.split()
        ops[name] = None if types == ["-"] else frozenset(types)
    return ops


# generation -> operator -> supported types (None: the parser has no importer for it).
OPERATORS: dict[str, dict[str, frozenset[str] | None]] = {gen: _parse(block) for gen, block in _TABLE.items()}


def generation(version: str) -> str:
    """The table generation of a TensorRT version ('8.5.2.2' -> '8.5', '10.3.0' -> '10')."""
    parts = str(version).strip().split(".")
    if parts[0] == "10" or (parts[0].isdigit() and int(parts[0]) > 10):
        return "10"
    key = ".".join(parts[:2])
    if key not in GENERATIONS:
        raise CKDError(f"TensorRT {version}: the kit knows TensorRT {', '.join(GENERATIONS)} (8.5+ needed)")
    return key
