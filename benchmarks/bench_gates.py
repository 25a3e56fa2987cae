"""Data-quality gates: seconds per suite on demo-sized frames, and their share of a round.

Builds synthetic frames shaped like the demo round's stage outputs (20k training samples,
5 epochs, 3 classes by default; dynamics as an Arrow table, the way a gate reads the Parquet
directory) and times ``run_suite`` for every suite, without and with Data Docs. The first
call (Great Expectations import + context) is reported on its own: a round pays it once.

    python benchmarks/bench_gates.py [--rows 20000] [--epochs 5] [--classes 3] [--repeats 3]
                                     [--pool-share 0.1] [--round-seconds S]

With ``--round-seconds`` (a demo round's wall time, gates included) it prints the gates' share;
the issue's target is at most 10%. CPU seconds are printed next to wall seconds: on a shared,
loaded machine they are the better estimate of what the gates cost on a quiet one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cartoflow.quality import SUITES, build_data_docs, preload, run_suite  # noqa: E402

TARGET_SHARE = 0.10


def frames(
    rows: int, epochs: int, classes: int, *, pool_share: float = 0.1, seed: int = 0
) -> dict[str, tuple[Any, dict]]:
    """Passing inputs for every suite, sized like one demo round."""
    rng = np.random.default_rng(seed)
    names = [str(c) for c in range(classes)]
    ids = np.array([f"t{i:06d}" for i in range(rows)], dtype=object)
    labels = rng.integers(0, classes, rows)
    dataset = pd.DataFrame(
        {
            "id": ids,
            "text": [f"question number {i} about topic {i % 97}" for i in range(rows)],
            "label": np.array(names, dtype=object)[labels],
            "group": [f"g{i // 2}" for i in range(rows)],
        }
    ).astype({"id": "str", "text": "str", "label": "str", "group": "str"})

    logits = rng.normal(size=(epochs, rows, classes)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    gold = np.take_along_axis(probs, labels[None, :, None], axis=2)[..., 0]
    pred = probs.argmax(axis=2)
    dynamics = pa.table(
        {
            "sample": np.tile(np.arange(rows, dtype=np.int64), epochs),
            "epoch": np.repeat(np.arange(epochs, dtype=np.int32), rows),
            "gold_prob": gold.ravel(),
            "correct": (pred == labels).ravel(),
            "margin": rng.normal(size=epochs * rows).astype(np.float32),
            "pred": pred.ravel().astype(np.int16),
            "probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.ravel()), classes),
        }
    )

    correct = pred == labels
    correctness = correct.sum(axis=0)
    confidence = gold.mean(axis=0)
    metrics = pd.DataFrame(
        {
            "sample": np.arange(rows, dtype=np.int64),
            "id": ids,
            "label": labels.astype(np.int64),
            "confidence": confidence,
            "variability": gold.std(axis=0),
            "correctness": correctness,
            "corr_frac": correctness / epochs,
            "forgetfulness": (correct[:-1] & ~correct[1:]).sum(axis=0),
            "never_learnt": correctness == 0,
            "threshold_closeness": confidence * (1 - confidence),
            "aum": rng.normal(size=rows),
        }
    )

    picked = rng.choice(rows, size=int(rows * pool_share), replace=False)
    pools = pd.DataFrame(
        {
            "sample": picked,
            "id": ids[picked],
            "label": np.array(names, dtype=object)[labels[picked]],
            "pool": np.array(["relabel", "hard", "very_hard"])[np.arange(picked.size) % 3],
            "rule": "rule",
        }
    )
    annotations = pd.DataFrame(
        {"id": ids[picked], "new_label": np.array(names, dtype=object)[labels[picked]]}
    )
    decisions = pd.DataFrame({"sample_id": ids[picked], "action": "keep", "new_label": None})
    return {
        "dataset": (dataset, {"labels": names}),
        "dynamics": (dynamics, {"num_samples": rows, "num_epochs": epochs}),
        "metrics": (metrics, {"num_epochs": epochs, "num_samples": rows, "labels": range(classes)}),
        "pools": (
            pools,
            {"training_ids": ids, "labels": names, "budgets": {"relabel": rows, "hard": rows}},
        ),
        "annotations": (annotations, {"batch_ids": ids[picked], "labels": names}),
        "new_version": (dataset, {"parent": dataset, "decisions": decisions}),
        "model": (None, {"baseline_macro_f1": 0.8, "retrained_macro_f1": 0.81}),
    }


def timed(call: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of ``call``; CPU time is what a quiet machine would take."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        if isinstance(result, dict) and not result["success"]:
            raise SystemExit(f"benchmark frame failed its suite: {result['results']}")
    return statistics.median(walls), statistics.median(cpus)


MODES = ("plain", "docs", "stored")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--pool-share", type=float, default=0.1, help="pools/annotations rows as a share of rows"
    )
    parser.add_argument("--round-seconds", type=float, default=None)
    args = parser.parse_args()

    inputs = frames(args.rows, args.epochs, args.classes, pool_share=args.pool_share)
    first = timed(lambda: preload(), 1)
    print(f"first call (GX import + context): wall {first[0]:.2f} s, cpu {first[1]:.2f} s")
    print("seconds per call, wall / cpu; plain: no Data Docs, docs: rendered per call,")
    print("stored: result stored for one build_data_docs later")
    print(f"{'suite':<12} {'rows':>7} " + " ".join(f"{m:>13}" for m in MODES))
    totals = {m: [0.0, 0.0] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        options: dict[str, dict[str, Any]] = {
            "plain": {},
            "docs": {"data_docs_dir": Path(tmp) / "rendered"},
            "stored": {"data_docs_dir": Path(tmp) / "stored", "render_docs": False},
        }
        for name in SUITES:
            frame, params = inputs[name]
            cells = []
            for mode in MODES:
                wall, cpu = timed(
                    lambda f=frame, p=params, n=name, o=options[mode]: run_suite(n, f, **p, **o),
                    args.repeats,
                )
                totals[mode][0] += wall
                totals[mode][1] += cpu
                cells.append(f"{wall:>6.2f}/{cpu:<6.2f}")
            rows = 1 if frame is None else len(frame)
            print(f"{name:<12} {rows:>7} " + " ".join(cells))
        deferred = timed(lambda: build_data_docs(options["stored"]["data_docs_dir"]), 1)
    print(
        f"{'total':<12} {'':>7} "
        + " ".join(f"{totals[m][0]:>6.2f}/{totals[m][1]:<6.2f}" for m in MODES)
    )
    print(f"one build_data_docs over every stored result: {deferred[0]:.2f} / {deferred[1]:.2f}")
    for i, clock in enumerate(("wall", "cpu")):
        per_gate = first[i] + totals["docs"][i]
        once = first[i] + totals["stored"][i] + deferred[i]
        print(f"{clock}: gates of one round, docs per gate {per_gate:.2f} s, once {once:.2f} s")
        if args.round_seconds:
            share = min(per_gate, once) / args.round_seconds
            verdict = "OK" if share <= TARGET_SHARE else "over target"
            print(f"  share of a {args.round_seconds:.0f} s round: {share:.1%} ({verdict}, <= 10%)")


if __name__ == "__main__":
    main()
