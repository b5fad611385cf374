//! SQLite queue (in progress).
