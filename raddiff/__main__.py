"""``python -m raddiff``: the command line."""

from raddiff.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
