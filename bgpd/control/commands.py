"""CLI subcommands that talk to a running daemon over its control socket."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the control subcommands (show, status, health, stop) to the ``bgpd`` parser."""
    del subparsers
