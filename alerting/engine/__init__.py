"""The pure hold-risk engine: state + event + now -> new state + alert events.

Imports no faust, kafka, slack_sdk or prometheus_client (a test enforces it).
"""
