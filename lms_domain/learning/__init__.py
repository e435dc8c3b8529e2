"""Learning as a login sees it: actor-scoped enrollments, progress, attempts and certificates."""
