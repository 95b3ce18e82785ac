"""``python -m bench [name ...]``: run the benchmarks (all by default)."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = (
    "registrations",
    "rest",
    "auth",
    "lwm2m",
    "devices",
    "things",
    "tasks",
    "storm",
    "memory",
)


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
    parser.add_argument(
        "--storm-devices", type=int, default=100_000, help="storm: devices registering at once"
    )
    parser.add_argument(
        "--memory-devices", type=int, default=200_000, help="memory: devices registered"
    )
    parser.add_argument(
        "--compare-wakaama",
        action="store_true",
        help="registrations: against Eclipse Wakaama's C lwm2mserver (built from ../shared/peers)",
    )
    parser.add_argument(
        "--profile",
        help="registrations: py-spy flame graph (SVG) of meadowlark serve, to this file",
    )
    args = parser.parse_args()
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        options = {"duration": args.duration}
        if name == "lwm2m" and args.lwm2m_devices:
            options["max_devices"] = args.lwm2m_devices
        if name == "registrations":
            options["compare_wakaama"] = args.compare_wakaama
            options["profile"] = args.profile
        if name == "tasks":
            options["devices"] = args.task_devices
        if name == "storm":
            options["devices"] = args.storm_devices
        if name == "memory":
            options["devices"] = args.memory_devices
        module.run(**options)


if __name__ == "__main__":
    main()
