from services.notify.app import create_app
from services.notify.settings import NotifySettings
from shared.logs import configure_logging
from shared.service import run_service

configure_logging("notify")  # first: a bad setting must not print its value unscrubbed
settings = NotifySettings()
run_service(lambda: create_app(settings), settings)
