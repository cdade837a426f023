"""``python -m snip_lib``: the command line (see :mod:`snip_lib.cli`)."""

from snip_lib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
