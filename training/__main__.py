"""``python -m training STAGE ...``: dispatch only (see :mod:`training.cli`)."""

from .cli import main

raise SystemExit(main())
