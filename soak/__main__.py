"""``python -m soak --messages 5000 --threads 16 --seed 1``: see soak.run."""

from __future__ import annotations

import argparse
import sys

from soak.run import Settings, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m soak",
        description="Send many messages from many threads through a Mailer to a "
        "fault-injecting server on 127.0.0.1 and account for every one.",
    )
    defaults = Settings()
    parser.add_argument("--messages", type=int, default=defaults.messages)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=defaults.fault_rate,
        help="probability of a fault at each decision point (default %(default)s)",
    )
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument(
        "--rss",
        action="store_true",
        help="judge flat memory by RSS with tracemalloc off (default: the traced heap)",
    )
    args = parser.parse_args(argv)
    if args.messages < 1 or args.threads < 1 or not 0 <= args.fault_rate <= 1:
        parser.error("--messages and --threads must be positive, --fault-rate in [0, 1]")
    settings = Settings(
        messages=args.messages,
        threads=args.threads,
        seed=args.seed,
        fault_rate=args.fault_rate,
        connections=args.connections,
        trace_memory=not args.rss,
    )
    passed, report = run(settings)
    print(report)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
