"""A multi-user GraphQL API over a todo schema."""
