from typing import ClassVar

from shared.settings import ServiceSettings, prefixed


class DirectorySettings(ServiceSettings):
    service_name: ClassVar[str] = "directory"
    model_config = prefixed("DIRECTORY_")

    port: int = 8003
    # A whole region's directory can arrive at once (POST /hsds): larger bodies than the other services.
    max_body_bytes: int = 10_000_000
    # Load the bundled sample directory and gazetteer when the tables are empty.
    load_sample: bool = False
    # With the sample: the SHA-256 of the development ops key (``pathways up`` sets it), for the ops
    # user "dev-ops". Real ops users are made with ``pathways ops-users``.
    sample_ops_key_hash: str = ""
