"""Where the journal, locks, drift, saved plans and schedules live: SQLite or PostgreSQL."""
