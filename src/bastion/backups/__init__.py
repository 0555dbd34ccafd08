"""Encrypted backups of the site: the file format, snapshots of the site tables, restore,
schedule.
"""
