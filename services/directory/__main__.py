from services.directory.app import create_app
from services.directory.settings import DirectorySettings
from shared.service import run_service

settings = DirectorySettings()
run_service(lambda: create_app(settings), settings)
