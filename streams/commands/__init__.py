"""One module per subcommand group; each exposes `register(subparsers)`.

A registered parser sets `func(args, settings) -> int` as its default.
"""
