"""The `holdwatch` console command: one module per subcommand, `main` builds the parser.

`main` is the composition root: it builds the one `Settings` object and hands it to the command.
Command modules import their heavy dependencies inside `run` so `--help` stays fast.
"""
