"""Every console page on one router (the modules add their pages to the realm's router)."""

from services.notify.console import credentials, directory  # noqa: F401  (their pages join the router)
from services.notify.console.cases import router

__all__ = ["router"]
