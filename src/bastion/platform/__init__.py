"""What every capability stands on: the unit of work, database, settings, audit recording,
errors, files, web and console plumbing.
"""
