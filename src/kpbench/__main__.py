import sys

from kpbench.cli.main import main

sys.exit(main())
