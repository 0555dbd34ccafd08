"""The integration client: pulls session reports and recordings off a site into a
directory, on a schedule, resuming where it stopped. Installed alone."""
