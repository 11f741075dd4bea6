"""Shared fixtures: the Kafka broker (tests/fixtures/kafka.py) and the Slack test server."""

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.slack",
]
