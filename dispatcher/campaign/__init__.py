"""The editors' queue: campaign types, loading with file:line:col errors, the calendar and the pure plan."""
