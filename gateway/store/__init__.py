"""Persistence. `Store` (base.py) is the narrow interface the pipeline uses; `SqliteStore`
(sqlite.py) is the embedded default. Records (records.py) are the one definition of what is
stored."""
