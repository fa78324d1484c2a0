"""One module per subcommand; each has `add_parser(subparsers, common)` and sets `func`."""
