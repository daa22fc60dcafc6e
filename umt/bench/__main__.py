from __future__ import annotations

import importlib
import sys

from umt.bench import BENCHMARKS
from umt.utils.registry import did_you_mean


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(f"usage: python -m umt.bench {{{','.join([*BENCHMARKS, 'all'])}}} [options]")
        return 0
    name, rest = argv[0], argv[1:]
    if name != "all" and name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}{did_you_mean(name, BENCHMARKS)}", file=sys.stderr)
        return 2
    for bench_name in BENCHMARKS if name == "all" else [name]:
        for module_name in BENCHMARKS[bench_name]:
            importlib.import_module(module_name).run(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
