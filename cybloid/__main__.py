import sys

from cybloid.cli import main

sys.exit(main())
