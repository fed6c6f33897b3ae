import sys

from destination.cli import main

sys.exit(main())
