"""`python -m dispatcher` runs the command line."""

import sys

from dispatcher.cli.main import main

sys.exit(main())
