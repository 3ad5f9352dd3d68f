"""Models of the billing app arrive with its issue; the app is installed so migrations and URLs
have their place from the start."""
