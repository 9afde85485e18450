"""The queue service: HTTP routes, auth, request log and the in-memory queue manager."""
