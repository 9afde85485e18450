"""Durable storage of the queues' state on disk."""
