"""``python -m ssl_obstacle`` is the ``ssl-obstacle`` command."""

import sys

from .cli import main

sys.exit(main())
