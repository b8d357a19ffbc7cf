import sys

from mgncutover.cli import main

sys.exit(main())
