"""The ``cartoflow`` command line: library commands that need no Prefect.

``cartoflow metrics``, ``pools`` and ``datamap`` work on stored dynamics and a dataset file;
``checks list`` prints the data-quality suites; ``demo-data`` writes the bundled demo data.
The Prefect commands (``round``, ``serve``) are added by ``flows.cli``, which owns the console
script; ``python -m cartoflow`` runs the library commands alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cartoflow.errors import CartoflowError

Handler = Callable[[argparse.Namespace], int]


def _step(message: str) -> Callable[[], None]:
    """Print a progress line to stderr now, and its duration when the returned callable runs."""
    start = time.perf_counter()
    print(f"... {message}", file=sys.stderr, flush=True)

    def done() -> None:
        print(f"    done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)

    return done


def _load_labelled(path: Path, args: argparse.Namespace) -> Any:
    from cartoflow.datasets import ColumnMap, load_dataset

    columns = ColumnMap(id=args.id_column, text=args.text_column, label=args.label_column)
    return load_dataset(path, columns=columns)


def cmd_metrics(args: argparse.Namespace) -> int:
    from cartoflow.dynamics import read_dynamics
    from cartoflow.metrics import compute_metrics
    from cartoflow.workspace import write_frame

    done = _step(f"reading dataset {args.dataset}")
    dataset = _load_labelled(args.dataset, args)
    done()
    done = _step(f"reading dynamics {args.dynamics}")
    dynamics = read_dynamics(args.dynamics)
    done()
    if dynamics.num_samples != len(dataset.frame):
        raise CartoflowError(
            f"Expected dynamics for the {len(dataset.frame)} rows of {args.dataset}, but "
            f"{args.dynamics} holds {dynamics.num_samples} samples. Use the dataset version "
            "the model was trained on."
        )
    done = _step(f"scoring {dynamics.num_samples} samples x {dynamics.num_epochs} epochs")
    metrics = compute_metrics(
        dynamics,
        ids=dataset.frame["id"].tolist(),
        labels=dataset.labels,
        label_names=list(dataset.label_map.names),
        last_epochs=args.last_epochs,
    )
    done()
    write_frame(metrics, args.out)
    print(args.out)
    return 0


def cmd_pools(args: argparse.Namespace) -> int:
    import pandas as pd

    from cartoflow.pools import PoolConfig, pool_summary, select_pools
    from cartoflow.workspace import write_frame

    dataset = _load_labelled(args.dataset, args)
    metrics = pd.read_parquet(args.metrics)
    config = (
        PoolConfig.model_validate_json(args.config.read_text()) if args.config else PoolConfig()
    )
    if args.budget is not None:
        config = config.with_budget(args.budget)
    done = _step("selecting pools")
    pools = select_pools(
        metrics,
        config=config,
        texts=dataset.frame["text"],
        groups=dataset.frame["group"] if "group" in dataset.frame.columns else None,
        num_epochs=args.epochs,
    )
    done()
    write_frame(pools, args.out)
    print(pool_summary(pools).to_string(), file=sys.stderr)
    print(args.out)
    return 0


def cmd_datamap(args: argparse.Namespace) -> int:
    import pandas as pd

    from cartoflow.datamap import plot_before_after, plot_data_map

    metrics = pd.read_parquet(args.metrics)
    if args.after is not None:
        path = plot_before_after(metrics, pd.read_parquet(args.after), args.out)
    else:
        path = plot_data_map(metrics, args.out, title=args.title)
    print(path)
    return 0


def cmd_checks(args: argparse.Namespace) -> int:
    from cartoflow.quality import format_suites_table

    print(format_suites_table())
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from cartoflow.demo import demo_sizes, write_demo

    done = _step(f"generating {args.size} demo data into {args.out}")
    sizes = demo_sizes(args.size)
    paths = write_demo(
        args.out,
        n_train=sizes["n_train"],
        n_eval=sizes["n_eval"],
        n_unlabeled=sizes["n_unlabeled"],
        seed=args.seed,
    )
    done()
    for path in paths.values():
        print(path)
    return 0


def _dataset_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", type=Path, required=True, help="CSV, Parquet or JSONL")
    parser.add_argument("--id-column", default="id")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")


def build_parser(prog: str = "cartoflow") -> tuple[argparse.ArgumentParser, Any]:
    """The parser with the library commands; callers may add more subcommands."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Find the training samples that hold a classifier back."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("metrics", help="score every sample from stored dynamics")
    p.add_argument("--dynamics", type=Path, required=True, help="the dynamics/ folder")
    _dataset_args(p)
    p.add_argument("--last-epochs", type=int, default=3, help="epochs behind suggested_label")
    p.add_argument("--out", type=Path, default=Path("metrics.parquet"))
    p.set_defaults(handler=cmd_metrics)

    p = sub.add_parser("pools", help="select relabel / hard / very-hard pools from metrics")
    p.add_argument("--metrics", type=Path, required=True)
    _dataset_args(p)
    p.add_argument("--epochs", type=int, required=True, help="epochs the dynamics cover")
    p.add_argument("--budget", type=int, default=None, help="at most N samples per pool")
    p.add_argument("--config", type=Path, default=None, help="a PoolConfig as JSON")
    p.add_argument("--out", type=Path, default=Path("pools.parquet"))
    p.set_defaults(handler=cmd_pools)

    p = sub.add_parser("datamap", help="draw the data map (or before/after with --after)")
    p.add_argument("--metrics", type=Path, required=True)
    p.add_argument("--after", type=Path, default=None, help="metrics after the fixes")
    p.add_argument("--title", default=None)
    p.add_argument("--out", type=Path, default=Path("data_map.png"))
    p.set_defaults(handler=cmd_datamap)

    p = sub.add_parser("checks", help="the data-quality suites")
    p.add_argument("action", choices=["list"])
    p.set_defaults(handler=cmd_checks)

    p = sub.add_parser("demo-data", help="write the bundled demo data")
    p.add_argument("--out", type=Path, default=Path("data/generated"))
    p.add_argument("--size", choices=["tiny", "small", "demo"], default="demo")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=cmd_demo_data)
    return parser, sub


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse and dispatch; a cartoflow error prints one clear line and exits with 1."""
    args = parser.parse_args(argv)
    try:
        handler: Handler = args.handler
        return handler(args)
    except (CartoflowError, FileNotFoundError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"cartoflow {args.command}: error: {message}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser, _ = build_parser()
    return run(parser, argv)
