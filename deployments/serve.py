"""Serve every cartoflow deployment from one process (no work pool, no worker).

    .venv/bin/python deployments/serve.py [--timezone Europe/Berlin] [--workspace /data/ws]

- ``active-learning-round/active-learning-round``: triggered by hand (UI form or CLI).
- ``nightly-reanalysis/nightly-reanalysis``: cron ``0 2 * * *`` (02:00) in ``--timezone``.
- ``ablation/ablation``: triggered by hand.

The deployments are the ones ``deployments/prefect.yaml`` declares for a work pool (names,
entry points, descriptions, tags, schedules): one list for both ways of running them. Flag
defaults come from the environment: ``CARTOFLOW_WORKSPACE``, ``CARTOFLOW_TIMEZONE`` and
``CARTOFLOW_NIGHTLY_CRON`` (the schedule's defaults: prefect.yaml's). Prefect's own settings
(``PREFECT_API_URL``, ...) choose the server. Parameters default to full pydantic configs, so
the UI shows every field as a form.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml
from prefect import Flow
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python deployments/serve.py` from a checkout without `pip -e`
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

PREFECT_YAML = Path(__file__).resolve().with_name("prefect.yaml")


def declared() -> list[dict[str, Any]]:
    """The deployments ``prefect.yaml`` declares, as written there."""
    deployments: list[dict[str, Any]] = yaml.safe_load(PREFECT_YAML.read_text())["deployments"]
    return deployments


def declared_schedule() -> tuple[str, str]:
    """The nightly re-analysis's cron and timezone in ``prefect.yaml`` (its one schedule)."""
    (schedule,) = [s for d in declared() for s in d.get("schedules") or []]
    return str(schedule["cron"]), str(schedule.get("timezone", "UTC"))


def _flow(entrypoint: str) -> Flow[..., Any]:
    """``flows/x.py:name`` -> the flow object, imported as the module ``flows.x``."""
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return cast(Flow[..., Any], getattr(module, name))


def build_deployments(
    *, workspace: str | None = None, timezone: str | None = None, cron: str | None = None
) -> list[RunnerDeployment]:
    """The deployments ``prefect.yaml`` declares, to serve from this process.

    Args:
        workspace: Default ``workspace`` parameter of every deployment (None: the flow's own
            default, ``$CARTOFLOW_WORKSPACE`` or ``./workspace`` where the run starts).
        timezone: IANA name the nightly cron is read in, e.g. ``Europe/Berlin`` (None: as
            prefect.yaml says).
        cron: When the nightly re-analysis runs (None: as prefect.yaml says).
    """
    from prefect.deployments.runner import RunnerDeployment
    from prefect.schedules import Cron

    common: dict[str, Any] = {"workspace": workspace} if workspace else {}
    built = []
    for spec in declared():
        flow = _flow(spec["entrypoint"])
        schedules = [
            Cron(cron or s["cron"], timezone=timezone or s.get("timezone", "UTC"))
            for s in spec.get("schedules") or []
        ]
        deployment = flow.to_deployment(
            name=spec["name"],
            description=spec["description"],
            parameters=form_defaults(flow) | spec.get("parameters", {}) | common,
            tags=spec["tags"],
            schedules=schedules or None,
        )
        built.append(cast(RunnerDeployment, deployment))
    return built


def form_defaults(flow: Flow[..., Any]) -> dict[str, Any]:
    """``{"config": <its pydantic model's defaults>}`` for a flow's ``config: Model | None``.

    The flows default ``config`` to None; a deployment that stores the full default model instead
    makes the UI's run form show every field, already filled in.
    """
    hint = typing.get_type_hints(flow.fn).get("config")
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return {"config": candidate().model_dump(mode="json")}
    return {}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="deployments/serve.py", description=__doc__.split("\n\n", 1)[0]
    )
    parser.add_argument(
        "--workspace",
        default=os.environ.get("CARTOFLOW_WORKSPACE"),
        help="workspace of every run (default: $CARTOFLOW_WORKSPACE, else ./workspace)",
    )
    cron, timezone = declared_schedule()
    parser.add_argument(
        "--timezone",
        default=os.environ.get("CARTOFLOW_TIMEZONE") or timezone,
        help=f"IANA timezone of the nightly cron (default: $CARTOFLOW_TIMEZONE, else {timezone})",
    )
    parser.add_argument(
        "--cron",
        default=os.environ.get("CARTOFLOW_NIGHTLY_CRON") or cron,
        help=f"nightly schedule (default: $CARTOFLOW_NIGHTLY_CRON, else {cron!r})",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="at most this many runs at once (default: 5)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="print the deployments and their schedules, then exit without serving",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workspace = str(Path(args.workspace).expanduser().resolve()) if args.workspace else None
    deployments = build_deployments(workspace=workspace, timezone=args.timezone, cron=args.cron)
    if args.check:
        for d in deployments:
            schedules = [
                f"{s.schedule.cron} ({s.schedule.timezone})"  # type: ignore[union-attr]
                for s in d.schedules or []
            ]
            print(f"{d.flow_name}/{d.name}: {', '.join(schedules) or 'manual'}")
        return 0

    from prefect import serve
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        print(
            "PREFECT_API_URL is not set: start a server (`prefect server start`) and point this "
            "process at it, e.g. `export PREFECT_API_URL=http://127.0.0.1:4200/api`.",
            file=sys.stderr,
        )
        return 2
    serve(*deployments, limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
