"""Replay: event logs → the input topics, stamped so the pipeline restores the log's order.

`plan` is pure (log records in → publish/tick/barrier actions out); `publish` is the shell that
paces and sends them with kafka-python and waits at the CARM barrier.
May import `schemas`, `streams.kafka`, `streams.settings`.
"""
