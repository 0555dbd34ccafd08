"""People and API clients: sign-in and lockout, web sessions, passwords, bearer tokens."""
