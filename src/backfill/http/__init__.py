"""HTTP pieces shared by every HTTP adapter (both API dialects and the web page).

Framework-level and neutral: the request id every response carries and the canonical
response envelope. Nothing here knows about a dialect; ``api`` and ``web`` both import it,
so ``web`` never needs ``api``.
"""
