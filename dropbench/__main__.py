import sys

from dropbench.cli import main

sys.exit(main())
