"""One module per `gas` command: each has `add_parser(subparsers)` and `run(args) -> int`."""
