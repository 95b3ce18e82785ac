"""``python -m bench [name ...]``: run the benchmarks (all but ``lwm2m`` by default).

The first five print the figures of the speed-and-scale targets, each as a ratio against
a baseline measured in the same run: ``registrations`` (``meadowlark serve`` against
Wakaama's C server with ``--compare-wakaama``), ``notifications`` (against a bare aiocoap
observer), ``rest`` (authenticated GETs against ``/health``), ``storm`` (100,000 devices
registering at once) and ``memory`` (RSS per device at 200,000 devices). ``coap_tcp``
compares Register+Update over CoAP over TCP/TLS with UDP. ``dtls`` prints
full DTLS-PSK handshakes and requests over DTLS per second against plain UDP. ``handlers``
prints webhook deliveries per second against bare ingest. ``lwm2m`` is
the LwM2M layer in process (registrations and memory against bare aiocoap, then
``notifications``). ``bootstrap`` is the bootstrap server: bootstraps then registrations
per second against plain registrations.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

BENCHMARKS = (
    "registrations",
    "notifications",
    "rest",
    "storm",
    "memory",
    "auth",
    "devices",
    "things",
    "tasks",
    "coap_tcp",
    "dtls",
    "handlers",
    "monitoring",
)
BY_NAME_ONLY = ("lwm2m", "psk_keyring", "bootstrap", "alerts", "dtls_handshakes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "names", nargs="*", choices=[*BENCHMARKS, *BY_NAME_ONLY, []], default=list(BENCHMARKS)
    )
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
        metavar="FOLDER",
        help="registrations, notifications: py-spy flame graphs of meadowlark serve, "
        "saved as FOLDER/NAME.svg",
    )
    args = parser.parse_args()
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        options = {"duration": args.duration}
        if name == "lwm2m" and args.lwm2m_devices:
            options["max_devices"] = args.lwm2m_devices
        if name == "registrations":
            options["compare_wakaama"] = args.compare_wakaama
        if name in ("registrations", "notifications") and args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            options["profile"] = str(Path(args.profile) / f"{name}.svg")
        if name == "tasks":
            options["devices"] = args.task_devices
        if name == "storm":
            options["devices"] = args.storm_devices
        if name == "memory":
            options["devices"] = args.memory_devices
        module.run(**options)


if __name__ == "__main__":
    main()
