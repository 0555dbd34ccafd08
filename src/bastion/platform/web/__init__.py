"""Web plumbing every capability's pages and API share: the app, dependencies, templates,
CSRF, uploads.
"""
