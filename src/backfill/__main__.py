"""``python -m backfill`` is the ``backfill`` command."""

from backfill.cli.main import main

if __name__ == "__main__":
    main()
