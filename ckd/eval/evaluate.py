"""Score result folders against a benchmark's ground truth."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ckd.errors import CKDError
from ckd.eval.layouts import GroundTruth, load_result, tracker_name
from ckd.eval.protocols import Protocol, Scores, SequenceCounts


@dataclass
class TrackerScores:
    name: str
    overall: Scores
    by_attribute: dict[str, Scores] = field(default_factory=dict)


@dataclass
class Evaluation:
    protocol: Protocol
    trackers: list[TrackerScores]
    problems: list[str]


def evaluate(
    protocol: Protocol,
    truth: GroundTruth,
    result_dirs: Sequence[str | Path],
    allow_missing: bool = False,
    progress: bool | None = None,
) -> Evaluation:
    """Score every results folder; problems (missing, short, unparsable) fail unless `allow_missing`.

    With `allow_missing`, a missing or short sequence is left out of that tracker's average (its `sequences`
    count says so) and unparsable rows count as NaN rows, which the protocol treats as failed frames.
    """
    dirs = [Path(d) for d in result_dirs]
    for d in dirs:
        if not d.is_dir():
            raise CKDError(f"{d}: results folder does not exist")
    names = [tracker_name(d) for d in dirs]
    if len(set(names)) != len(names):
        raise CKDError(f"two results folders give the same tracker name: {', '.join(names)}")
    problems: list[str] = []
    counted: list[list[SequenceCounts]] = []
    bar = tqdm(
        total=len(dirs) * len(truth.sequences),
        desc="eval",
        unit="seq",
        disable=None if progress is None else not progress,
    )
    for d in dirs:
        seqs = []
        for gt in truth.sequences:
            boxes, problem = load_result(d, gt, protocol.required_rows(gt))
            if problem:
                problems.append(problem)
            if boxes is not None:
                seqs.append(protocol.count(gt, boxes))
            bar.update()
        counted.append(seqs)
    bar.close()
    if problems and not allow_missing:
        raise CKDError(f"{len(problems)} result problem(s), first: {problems[0]}")
    trackers = []
    for name, seqs in zip(names, counted, strict=True):
        by_attr = {}
        for attr, members in truth.attributes.items():
            wanted = set(members)
            by_attr[attr] = protocol.aggregate([s for s in seqs if s.name in wanted])
        trackers.append(TrackerScores(name, protocol.aggregate(seqs), by_attr))
    return Evaluation(protocol, trackers, problems)
