"""The database: engine, the shared declarative base, the platform's own tables and the
migrations.
"""
