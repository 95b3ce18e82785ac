"""``python -m bench [name ...]``: run the benchmarks (all by default)."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = ("auth", "rest", "lwm2m", "devices", "things", "tasks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], default=list(BENCHMARKS))
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument(
        "--lwm2m-devices", type=int, help="lwm2m: devices registered for the memory figure"
    )
    parser.add_argument(
        "--task-devices", type=int, default=10_000, help="tasks: simulated devices in the group"
    )
    args = parser.parse_args()
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        options = {"duration": args.duration}
        if name == "lwm2m" and args.lwm2m_devices:
            options["max_devices"] = args.lwm2m_devices
        if name == "tasks":
            options["devices"] = args.task_devices
        module.run(**options)


if __name__ == "__main__":
    main()
