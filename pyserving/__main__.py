"""`python -m pyserving` is the same as the `pyserving` command."""

from pyserving.api.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
