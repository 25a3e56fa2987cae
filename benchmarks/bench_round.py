"""One demo round end to end (20k train, 5 epochs, two trainings), with and without the gates.

Prints, side by side from one run of this script:
- the total wall time of `cartoflow round` (a fresh process: Prefect's embedded server start,
  imports, every stage) with the Great Expectations gates on and off, and the flow run's own
  wall time (what a served deployment pays per round: no interpreter or API start-up);
- the share of it spent outside training and metrics (Prefect, Great Expectations, I/O),
  target <= 25%;
- the share the gates add to the round, target <= 10%.

    python benchmarks/bench_round.py [--size demo|small] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ("baseline", "retrained", "metrics", "metrics_after")


def one_round(workspace: Path, *, size: str, epochs: int, gates: bool) -> dict[str, float]:
    config = {"quality_gates": gates, "train": {"epochs": epochs}}
    config_path = workspace / "config.json"
    workspace.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config))
    # generate the demo data first, so both runs time the same work
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cartoflow",
            "demo-data",
            "--size",
            size,
            "--out",
            str(workspace / "d"),
        ],
        check=True,
        capture_output=True,
    )
    data = {s: workspace / "d" / f"{s}.parquet" for s in ("train", "eval", "unlabeled")}
    command = [
        sys.executable,
        "-m",
        "flows.cli",
        "round",
        "--train",
        str(data["train"]),
        "--eval",
        str(data["eval"]),
        "--unlabeled",
        str(data["unlabeled"]),
        "--annotator",
        "simulated:true_label",
        "--config",
        str(config_path),
        "--workspace",
        str(workspace),
    ]
    env = {
        **os.environ,
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the round failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    wall = time.perf_counter() - start
    (report_path,) = workspace.glob("runs/*/report.json")
    report = json.loads(report_path.read_text())
    timings = report["timings"]
    core = sum(timings.get(stage, 0.0) for stage in CORE)
    return {
        "wall": wall,
        "flow": report["flow_seconds"],
        "core": core,
        "gates": timings.get("gates", 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="demo", choices=["tiny", "small", "demo"])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        on = one_round(Path(tmp) / "on", size=args.size, epochs=args.epochs, gates=True)
        off = one_round(Path(tmp) / "off", size=args.size, epochs=args.epochs, gates=False)
    outside = 1 - on["core"] / on["wall"]
    outside_off = 1 - off["core"] / off["wall"]
    outside_flow = 1 - on["core"] / on["flow"]
    outside_flow_off = 1 - off["core"] / off["flow"]
    added = on["wall"] / off["wall"] - 1
    added_flow = on["flow"] / off["flow"] - 1
    print(f"demo round ({args.size}, {args.epochs} epochs, two trainings), one fresh process each")
    print(f"{'':38}{'gates on':>12}{'gates off':>12}")
    print(f"{'total wall time (s)':38}{on['wall']:>12.1f}{off['wall']:>12.1f}")
    print(f"{'flow run wall time (s)':38}{on['flow']:>12.1f}{off['flow']:>12.1f}")
    print(f"{'training + metrics (s)':38}{on['core']:>12.1f}{off['core']:>12.1f}")
    print(f"{'gate tasks (s)':38}{on['gates']:>12.1f}{off['gates']:>12.1f}")
    print(
        f"{'share outside training + metrics':38}{outside:>12.1%}{outside_off:>12.1%}"
        "   target <= 25%"
    )
    print(
        f"{'  same, within the flow run':38}{outside_flow:>12.1%}{outside_flow_off:>12.1%}"
        "   (no interpreter or embedded-API start-up)"
    )
    print(f"{'wall time the gates add':38}{added:>12.1%}{'':>12}   target <= 10%")
    print(f"{'  same, within the flow run':38}{added_flow:>12.1%}")
    print(f"{'gate tasks / round wall time':38}{on['gates'] / on['wall']:>12.1%}")


if __name__ == "__main__":
    main()
