"""HTTP routes, one module per resource; each parses, calls a use case
(``api.usecases``) and formats. None runs SQL or holds business logic."""
