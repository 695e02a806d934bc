"""The gateway's own database: SQLite by default, PostgreSQL for several replicas.

`engine` builds the engine and the write gate every SQLite writer passes; `tables` and
`states` describe the schema; `migrate` keeps it up to date (Alembic, `migrations/`); `inbox`,
`retry_queue` and `callbacks` are the stores the rest of the gateway uses.
"""
