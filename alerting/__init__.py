"""The hold-risk engine (pure) and the notifiers."""
