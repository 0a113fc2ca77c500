"""Moved to :mod:`lastmile_env.sources.order_log`; this name stays for old imports."""

import sys

from lastmile_env.sources import order_log as _order_log

sys.modules[__name__] = _order_log
