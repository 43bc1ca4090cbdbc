"""`python -m mesh.cli`: the `mesh` command without the console script."""

import sys

from mesh.cli import main

sys.exit(main())
