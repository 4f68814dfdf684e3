"""Entry point: ``python -m bgpd`` and the ``bgpd`` console script."""

from __future__ import annotations

import sys

from bgpd.cli import main as _main


def main() -> None:
    sys.exit(_main())


if __name__ == "__main__":
    main()
