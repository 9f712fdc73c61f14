"""Who may do what through the HTTP API: bearer tokens with scopes, stored as hashes."""
