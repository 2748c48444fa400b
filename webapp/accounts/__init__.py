"""Teams, memberships with roles, and hashed API tokens."""
