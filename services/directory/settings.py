from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class DirectorySettings(ServiceSettings):
    service_name: ClassVar[str] = "directory"
    model_config = prefixed("DIRECTORY_")

    port: int = 8003
    # Load the bundled sample directory and gazetteer when the tables are empty.
    load_sample: bool = False
