"""The update client: check, download and verify releases, offline bundles, download keys,
licence add-ons.
"""
