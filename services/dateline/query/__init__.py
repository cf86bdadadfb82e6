"""The read side: the query API, live pushes and the dashboard."""
