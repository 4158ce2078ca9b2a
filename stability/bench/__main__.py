"""``python -m stability.bench``: the same as ``stability bench``."""
import sys

from . import main

sys.exit(main())
