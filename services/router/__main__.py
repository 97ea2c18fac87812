from services.router.app import create_app
from services.router.settings import RouterSettings
from shared.logs import configure_logging
from shared.service import run_service

configure_logging("router")  # first: a bad setting must not print its value unscrubbed
settings = RouterSettings()
run_service(lambda: create_app(settings), settings)
