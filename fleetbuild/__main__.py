import sys

from fleetbuild.cli import main

sys.exit(main())
