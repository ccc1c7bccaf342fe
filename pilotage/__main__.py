import sys

from pilotage.cli import main

sys.exit(main())
