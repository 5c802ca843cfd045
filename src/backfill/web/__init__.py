"""web layer."""

from backfill.web.routes import router

__all__ = ["router"]
