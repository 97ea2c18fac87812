"""The ops console: web pages over the services' own ops functions and APIs (no second set of rules)."""
