from services.directory.app import create_app
from services.directory.settings import DirectorySettings
from shared.logs import configure_logging
from shared.service import run_service

configure_logging("directory")  # first: a bad setting must not print its value unscrubbed
settings = DirectorySettings()
run_service(lambda: create_app(settings), settings)
