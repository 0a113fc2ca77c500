"""``python -m lastmile_cli``: the ``lastmile`` command."""

from lastmile_cli import main

raise SystemExit(main())
