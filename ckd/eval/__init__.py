"""RGBT benchmark evaluation (GTOT, RGBT210, RGBT234, LasHeR, VTUAV) reproducing the official toolkits."""

from ckd.eval.evaluate import Evaluation, TrackerScores, evaluate
from ckd.eval.layouts import GroundTruth, load_ground_truth
from ckd.eval.protocols import PROTOCOLS, Protocol, Scores, SequenceGT, get_protocol

__all__ = [
    "PROTOCOLS",
    "Evaluation",
    "GroundTruth",
    "Protocol",
    "Scores",
    "SequenceGT",
    "TrackerScores",
    "evaluate",
    "get_protocol",
    "load_ground_truth",
]
