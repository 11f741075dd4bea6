"""Kafka plumbing: client configuration from Settings (one place), admin (topics), topic specs.

May import `streams.settings` and the Kafka client libraries; nothing of the worker or notifier.
"""
