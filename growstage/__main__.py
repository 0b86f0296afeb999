"""``python -m growstage ...`` is the ``growstage`` command."""
from growstage.cli import main

raise SystemExit(main())
