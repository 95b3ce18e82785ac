"""``python -m bench [name ...]``: run the benchmarks (all by default)."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = ("auth",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], default=list(BENCHMARKS))
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    args = parser.parse_args()
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        module.run(duration=args.duration)


if __name__ == "__main__":
    main()
