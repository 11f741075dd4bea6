"""The shell: Faust app, topics, tables, clocks, replay, back-test driver, broker, CLI."""
