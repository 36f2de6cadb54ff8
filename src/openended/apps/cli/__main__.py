"""`python -m openended.apps.cli`: the `openended` command."""

import sys

from openended.apps.cli.main import main

sys.exit(main())
