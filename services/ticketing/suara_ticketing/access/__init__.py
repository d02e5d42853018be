"""Who may do what: roles, departments, API tokens (stored hashed) and the token API."""
