"""The `bastion` command, the worker process, the web app and the composition root."""
