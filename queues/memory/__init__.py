"""The memory backend: queues in this process's memory, kept on disk by storage/."""
