"""``python -m stability``: the same as the ``stability`` command."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
