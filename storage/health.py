"""What GET /health reports for the memory backend: whether snapshots and the journal are failing."""


def persistence_health(snapshotter, journal):
    """(failing, details): failing while the last snapshot or the journal's last write failed."""
    journal_error = journal.failure if journal is not None else None
    failing = snapshotter.last_error is not None or journal_error is not None
    return failing, {
        "storage": {"backend": "memory", "last_error": journal_error or snapshotter.last_error},
        "snapshot": {"last_saved_at": snapshotter.last_saved_iso(), "last_error": snapshotter.last_error},
        "journal": {"enabled": journal is not None, "last_error": journal_error},
    }
