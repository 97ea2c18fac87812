from services.router.app import create_app
from services.router.settings import RouterSettings
from shared.service import run_service

settings = RouterSettings()
run_service(lambda: create_app(settings), settings)
