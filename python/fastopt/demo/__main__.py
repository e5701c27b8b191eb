"""``python -m fastopt.demo`` (see :mod:`fastopt.demo`)."""

from .cli import main

raise SystemExit(main())
