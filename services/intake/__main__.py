from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.logs import configure_logging
from shared.service import run_service

configure_logging("intake")  # first: a bad setting must not print its value unscrubbed
settings = IntakeSettings()
run_service(lambda: create_app(settings), settings)
