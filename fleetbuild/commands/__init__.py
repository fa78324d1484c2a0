"""One module per subcommand; each has `add_parser(subparsers, common)` and sets `func`."""
from __future__ import annotations

import argparse


def add_json_option(parser: argparse.ArgumentParser, what: str = "JSON") -> None:
    """--json [FILE]: machine output to stdout, or to FILE (written atomically)."""
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help=f"write {what} (stdout or FILE)")


def add_inventory_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--inventory", metavar="FILE", help="Ansible inventory (default: [inventory] path)")
