from services.notify.app import create_app
from services.notify.settings import NotifySettings
from shared.service import run_service

settings = NotifySettings()
run_service(lambda: create_app(settings), settings)
