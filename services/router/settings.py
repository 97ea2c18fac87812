from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class RouterSettings(ServiceSettings):
    service_name: ClassVar[str] = "router"
    model_config = prefixed("ROUTER_")

    port: int = 8002
    directory_url: str = "http://127.0.0.1:8003"
