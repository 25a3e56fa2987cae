"""Regenerate the bundled demo data (see data/README.md).

    python data/generate.py --out data/generated --size demo      # 20k / 4k / 40k
    python data/generate.py --out /tmp/bench --size 1000000       # 1M / 200k / 1M
    python data/generate.py --out data/generated --size tiny --clean

Writes train.parquet, eval.parquet, unlabeled.parquet and meta.json; the same seed always
gives the same files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cartoflow.demo import DEMO_SIZES, NoiseConfig, demo_sizes, write_demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/generated"), help="output folder")
    parser.add_argument(
        "--size",
        default="demo",
        help=f"one of {sorted(DEMO_SIZES)}, or N training rows (N // 5 eval, N unlabeled)",
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument(
        "--clean", action="store_true", help="no label noise (observed label = true label)"
    )
    args = parser.parse_args(argv)
    try:
        sizes = demo_sizes(args.size)
    except ValueError as exc:
        parser.error(str(exc))
    noise = NoiseConfig.clean() if args.clean else NoiseConfig()
    started = time.perf_counter()
    paths = write_demo(args.out, noise=noise, seed=args.seed, **sizes)
    seconds = time.perf_counter() - started
    meta = json.loads(paths["meta"].read_text(encoding="utf-8"))
    print(f"wrote {', '.join(str(p) for p in paths.values())} in {seconds:.1f}s")
    print(f"sizes {meta['sizes']}; wrong training labels {meta['realised_noise']['total']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
