"""The query API's routes, a module per resource; each gets the `Reader` injected."""
