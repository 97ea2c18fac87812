from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.service import run_service

settings = IntakeSettings()
run_service(lambda: create_app(settings), settings)
