import sys

from synthdata.cli import main

sys.exit(main())
