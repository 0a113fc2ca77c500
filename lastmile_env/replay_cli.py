"""``lastmile replay``: a recorded day as an animation (GIF/MP4) or an interactive page (HTML)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lastmile_env.replay import ReplayError, load_record


def add_replay_parser(sub: argparse._SubParsersAction) -> None:
    """The ``replay`` subcommand of the ``lastmile`` command."""
    replay = sub.add_parser(
        "replay",
        help="draw a recorded day (evaluate.py --record): an animation (.gif/.mp4) or an interactive page "
        "(.html; two records of the same day side by side)",
    )
    replay.add_argument("records", nargs="+", metavar="RECORD", help="*.replay.json.gz (two for a page)")
    replay.add_argument(
        "--out",
        required=True,
        help="day.gif, day.mp4 (needs ffmpeg), day.html, or frame.png (one frame, --at)",
    )
    replay.add_argument(
        "--at", type=float, default=None, metavar="MIN", help="a .png's minute of the shift (default: midday)"
    )
    replay.add_argument("--step-min", type=float, default=5.0, help="minutes between frames (default: 5)")
    replay.add_argument("--fps", type=int, default=10, help="animation frames per second (default: 10)")
    replay.add_argument(
        "--size", type=int, default=640, help="animation width and height in px (default: 640)"
    )
    replay.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    """Write the animation or the page; a bad record or option is one line on stderr and exit status 2."""
    out = Path(args.out)
    suffix = out.suffix.lower()
    try:
        if len(args.records) > 2:
            raise ReplayError(f"give one or two records, not {len(args.records)}")
        if suffix in (".gif", ".mp4", ".png") and len(args.records) != 1:
            raise ReplayError(
                "an animation shows one record; two records of a day go side by side in a .html"
            )
        if suffix not in (".gif", ".mp4", ".png", ".html", ".htm"):
            raise ReplayError(f"cannot write {out.name!r}: use .gif, .mp4, .png or .html")
        if not 16 <= args.size <= 4096:
            raise ReplayError(f"--size must be between 16 and 4096 px, got {args.size}")
        records = [load_record(path) for path in args.records]
        if suffix in (".html", ".htm"):
            from lastmile_env.replay_page import write_page

            written = write_page(records, out, step_min=args.step_min)
        elif suffix == ".png":
            from lastmile_env.replay_video import frame_png

            written = frame_png(records[0], args.at, out, size_px=(args.size, args.size))
        else:
            from lastmile_env.replay_video import write_animation

            written = write_animation(
                records[0], out, step_min=args.step_min, fps=args.fps, size_px=(args.size, args.size)
            )
    except ReplayError as exc:
        print(f"lastmile replay: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB)")
    return 0
