"""Test helpers shared across test packages (servers, fixtures); not tests themselves."""
