"""The access console: what a representative runs to reach Jump Items through the site."""
