"""Moved to :mod:`lastmile_env.sources.solomon`; this name stays for old imports and
``python -m lastmile_env.solomon``."""

import sys

from lastmile_env.sources import solomon as _solomon

if __name__ == "__main__":
    raise SystemExit(_solomon.main())
else:
    sys.modules[__name__] = _solomon
