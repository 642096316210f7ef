"""Build (or find in the cache) the engines for a style: the same function the CLIs call on
first use, ahead of time. Prints where each artifact lives.

    python scripts/build_engine.py --style anime --backend tensorrt --precision fp16
    python scripts/build_engine.py --model-dir DIR --backend openvino --precision int8 --role head
"""

from __future__ import annotations

import argparse
import sys
import time

from realtime.console import run_command
from realtime.engine import ROLES, build, resolve_spec
from realtime.models import resolve_style
from realtime.options import add_arguments, from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build_engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=[*ROLES, "both"], default="both", help="which graph(s) to build")
    add_arguments(parser, ("models", "engine"))
    args = parser.parse_args(argv)

    def body(interrupts) -> None:
        o = from_args(args)
        files = resolve_style(o.style, o.model_dir, o.cache_dir, o.offline)
        for role in ROLES if args.role == "both" else (args.role,):
            spec = resolve_spec(o.backend, o.precision, o.engine_device, role)
            graph = files.head if role == "head" else files.background
            t = time.perf_counter()
            artifact = build(graph, spec, o.cache_dir)
            print(
                f"{role:10} {spec.backend} {spec.precision} {spec.device}: {artifact} ({time.perf_counter() - t:.1f} s)"
            )

    return run_command(parser.prog, body)


if __name__ == "__main__":
    sys.exit(main())
