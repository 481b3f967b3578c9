"""Reproduce the CPython race behind issue 16 in seconds: tracemalloc start/stop while GStreamer threads enter Python.

Three unsynchronised `videotestsrc ! appsink emit-signals=true` pipelines call a Python callback from their
streaming threads thousands of times a second (each call takes the GIL through a fresh thread state, allocated
while tracemalloc's hooks may be being removed), while the main thread starts tracemalloc, takes a snapshot and
stops it, `--toggles` times. On CPython 3.11 this ends in a segmentation fault (exit status 139) within a few
hundred toggles. `ckd run` used to do one such toggle per run with two 30 fps sensors, a far lower callback rate:
issue 16 saw about one crash in 20 runs under load. This is why no process-wide diagnostic hook may run in the
loop (`tests/test_pipelines_loop.py::test_the_loop_installs_no_process_wide_diagnostic_hooks`).

    .venv/bin/python scripts/tracemalloc_race.py; echo "exit $?"     # 139: crashed; 0: survived every toggle
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--toggles", type=int, default=3000, help="tracemalloc start/snapshot/stop cycles (default 3000)")
    args = p.parse_args(argv)
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    calls = [0]

    def on_sample(sink):
        sink.emit("pull-sample")
        calls[0] += 1
        return Gst.FlowReturn.OK

    desc = "videotestsrc ! video/x-raw,width=32,height=24 ! appsink name=s emit-signals=true sync=false drop=true"
    pipes = []
    for _ in range(3):
        pipe = Gst.parse_launch(desc)
        pipe.get_by_name("s").connect("new-sample", on_sample)
        pipe.set_state(Gst.State.PLAYING)
        pipes.append(pipe)
    for i in range(args.toggles):
        tracemalloc.start()
        _ = [bytearray(100) for _ in range(100)]
        tracemalloc.take_snapshot()
        tracemalloc.stop()
        if i % 100 == 0:
            print(f"toggle {i}, {calls[0]} callbacks", file=sys.stderr, flush=True)
    for pipe in pipes:
        pipe.set_state(Gst.State.NULL)
    print(f"survived {args.toggles} toggles ({calls[0]} callbacks from GStreamer threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
