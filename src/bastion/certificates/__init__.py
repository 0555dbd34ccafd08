"""The certificate store, the key vault, the internal CA, and the certificate the site serves."""
