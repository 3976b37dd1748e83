"""Business actions: one function per action, `(session, *, ...)`, never committing itself."""
