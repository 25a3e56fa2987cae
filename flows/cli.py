"""The ``cartoflow`` console script: the library commands plus the Prefect ones.

``cartoflow round`` runs one active-learning round in-process. Without ``PREFECT_API_URL`` set,
Prefect runs embedded (a temporary local API, no server to start); with it set, the run shows
up in that server's UI.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cartoflow.cli import build_parser, run
from flows.embedded_api import EmbeddedAPI, flow_runs


def cmd_round(args: argparse.Namespace) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    api = EmbeddedAPI.start()  # boots on the second core while the imports below run
    try:
        return _run_round(args, api)
    finally:
        if api is not None:
            api.stop()


def _run_round(args: argparse.Namespace, api: EmbeddedAPI | None) -> int:
    from cartoflow.config import RoundConfig
    from cartoflow.workspace import Workspace

    base = (
        RoundConfig.model_validate_json(args.config.read_text(encoding="utf-8"))
        if args.config
        else RoundConfig()
    )
    updates: dict[str, object] = {
        "annotator": args.annotator,
        "wait": args.wait,
        "annotator_error_rate": args.error_rate,
    }
    if args.dataset:
        updates["dataset"] = args.dataset
    for field, value in (
        ("train_path", args.train),
        ("eval_path", args.eval),
        ("unlabeled_path", args.unlabeled),
    ):
        if value is not None:
            updates[field] = str(Path(value).resolve())
    if args.train is None:
        updates["demo_size"] = args.demo
    if args.timeout_days is not None:
        updates["timeout_days"] = args.timeout_days
    if args.strategy:
        updates["strategies"] = {**base.strategies, "relabel": args.strategy}
    config = base.model_copy(update=updates)
    if args.epochs is not None:
        config.train = config.train.model_copy(update={"epochs": args.epochs})
    if args.budget is not None:
        config.pools = config.pools.with_budget(args.budget)
    config = RoundConfig.model_validate(config.model_dump())
    workspace = Workspace.resolve(args.workspace)
    if config.quality_gates:
        from cartoflow.quality import worker

        worker.start()  # imports Great Expectations in its own process, beside the next imports
    from flows.active_learning_round import active_learning_round

    with flow_runs(api):
        report = active_learning_round(config=config, workspace=str(workspace.root))
    run_dir = workspace.run_dir(report["round_id"])
    print()
    print(f"Round {report['round_id']}: {report['state']}")
    comparison = report.get("comparison")
    if comparison:
        base_acc = comparison["baseline"]["accuracy"]
        new_acc = comparison["retrained"]["accuracy"]
        print(f"  eval accuracy   {base_acc:.4f} -> {new_acc:.4f}")
        base_f1 = comparison["baseline"]["macro_f1"]
        new_f1 = comparison["retrained"]["macro_f1"]
        print(f"  eval macro-F1   {base_f1:.4f} -> {new_f1:.4f}")
    if report.get("label_changes"):
        print(f"  label changes   {report['label_changes']}")
    print(f"  report          {run_dir / 'report.json'}")
    for name, rel in report.get("files", {}).items():
        print(f"  {name:<15} {workspace.root / rel}")
    if report.get("reason"):
        print(f"  why             {report['reason']}")
    done = ("completed", "rejected", "nothing_to_review", "not_promoted")
    return 0 if report["state"] in done else 1


def add_round_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("round", help="run one active-learning round (Prefect flow)")
    p.add_argument("--train", type=Path, help="training file; default: the bundled demo data")
    p.add_argument("--eval", type=Path, help="eval file; default: a stratified split of --train")
    p.add_argument("--unlabeled", type=Path, help="unlabeled pool for expansion")
    p.add_argument("--dataset", help="dataset name in the workspace (default: demo)")
    p.add_argument(
        "--demo",
        choices=["tiny", "small", "demo"],
        default="demo",
        help="size of the demo data when --train is not given",
    )
    p.add_argument(
        "--annotator",
        default="human",
        help="'human' (wait in the Prefect UI) or 'simulated:<column>', e.g. simulated:true_label",
    )
    p.add_argument("--error-rate", type=float, default=0.0, help="simulated annotator errors")
    p.add_argument("--wait", choices=["pause", "suspend"], default="pause")
    p.add_argument("--timeout-days", type=float, default=None)
    p.add_argument("--strategy", choices=["fix", "remove"], default=None)
    p.add_argument("--budget", type=int, default=None, help="at most N samples per pool")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--config", type=Path, default=None, help="a RoundConfig as JSON")
    p.add_argument("--workspace", default=None, help="default: $CARTOFLOW_WORKSPACE or ./workspace")
    p.set_defaults(handler=cmd_round)


def main(argv: Sequence[str] | None = None) -> int:
    parser, sub = build_parser()
    add_round_command(sub)
    return run(parser, argv)


def entry() -> None:
    """The console script: :func:`main`, then exit without tearing the interpreter down.

    With torch, Prefect and Great Expectations loaded, Python's own teardown takes 2-3 s after
    everything is written. The exit hooks (log flushes, helper processes) still run first.
    """
    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
