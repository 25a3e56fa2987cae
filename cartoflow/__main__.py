"""``python -m cartoflow``: the library commands (no Prefect)."""

from cartoflow.cli import main

raise SystemExit(main())
