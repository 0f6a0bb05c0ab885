"""`python -m actors --config PATH`: the engine process."""

import sys

from actors.engine import main

sys.exit(main())
