"""The developer subcommands of `holdwatch`: broker, simulate, demo."""
