import sys

from simulators.smsc.cli import main

sys.exit(main())
