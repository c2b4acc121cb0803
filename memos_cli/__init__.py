"""Command-line entry points: `memosd` (the daemon) and `memos` (the client and admin tool)."""
