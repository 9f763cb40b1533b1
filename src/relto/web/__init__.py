"""The analyst web UI's files: the sign-in page, the app shell, and static/ (served by relto.api.ui)."""
