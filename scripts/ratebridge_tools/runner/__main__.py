"""`python -m ratebridge_tools.runner`: see ratebridge_tools.runner.cli."""

import sys

from ratebridge_tools.runner.cli import main

if __name__ == "__main__":
    sys.exit(main())
