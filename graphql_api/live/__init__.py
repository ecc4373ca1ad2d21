"""Live updates: GraphQL subscriptions over WebSocket (graphql-transport-ws on /graphql), fed by
the change feed and fanned out from PostgreSQL's LISTEN/NOTIFY."""
