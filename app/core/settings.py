"""Service settings, read from SUGGESTLAB_* environment variables and an optional .env file.

The defaults are the embedded mode: SQLite, a local data folder and a Celery broker kept in that
folder, so `suggestlab serve` works with no configuration at all.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-insecure-secret-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUGGESTLAB_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("suggestlab-data")
    database_url: str = ""
    broker_url: str = ""
    secret_key: str = DEV_SECRET

    storage: Literal["local", "s3"] = "local"
    s3_endpoint_url: str | None = None
    s3_bucket: str = "suggestlab"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"

    # Upload limits: a request, one file, one decoded image, one zip archive.
    max_upload_bytes: int = 1024 * 1024 * 1024
    max_file_bytes: int = 32 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    max_zip_entries: int = 50_000
    max_zip_uncompressed_bytes: int = 2 * 1024 * 1024 * 1024
    max_zip_ratio: float = 250.0
    # Processes that decode and hash uploaded images (0: one per spare core, at most 8, none below
    # 4 cores; 1: none, the request's own thread does it).
    ingest_processes: int = Field(default=0, ge=0, le=64)
    # Every request body that is not an upload is small JSON; this bounds what an unauthenticated
    # client can make the server hold in memory.
    max_json_bytes: int = 1024 * 1024

    # Browser sessions: the cookie holds a session token that ends at sign-out or after this long;
    # cookie_secure marks it Secure (set it whenever the service is reached over HTTPS).
    session_hours: float = 12.0
    cookie_secure: bool = False
    # Authentication failures allowed per client address, in the `limits` notation.
    auth_failure_limit: str = "30/minute"

    # Queued or running simulations a project may have at once (each can run for many minutes).
    max_active_simulations: int = 1

    lease_seconds: int = 600
    # Annotator calls (`next`, label) each API process runs at once; later ones wait their turn, first
    # come first served, so a burst is answered one after another instead of all at the end
    # (benchmarks/results/api_load.md, stop 31). 0 runs them all side by side.
    annotator_concurrency: int = Field(default=1, ge=0, le=1000)
    round_max_attempts: int = 3
    # A running round's (or representation job's) worker writes a heartbeat this often, from a thread
    # of its own; a round whose heartbeat is older than round_stale_seconds is taken to have lost its
    # worker and is queued again (or failed after round_max_attempts).
    round_heartbeat_seconds: float = 5.0
    round_stale_seconds: float = 120.0
    # Celery time limits for one round: the soft one raises inside the task (the round fails with the
    # reason), the hard one kills the pool process.
    round_soft_time_limit: int = 4 * 3600
    round_time_limit: int = 4 * 3600 + 600
    # None: start a worker inside `serve` only when the broker is the embedded one.
    embedded_worker: bool | None = None
    auto_migrate: bool = True
    torch_device: str = "auto"
    # Caps one representation job's training time (seconds); None: the device's setting (12 minutes
    # on a GPU; on a CPU 8 minutes up to 5,000 images of 28x28, in proportion to the pool's pixels
    # above that, at most 30: models.representation.pool_time_budget).
    representation_time_budget_s: float | None = None
    # A queued representation job starts once no pool image has arrived for this long (at most
    # representation_settle_max_seconds after it was picked up), so a dataset uploaded as several
    # requests one after another is learned whole, not from its first request.
    representation_settle_seconds: float = Field(default=10.0, ge=0)
    representation_settle_max_seconds: float = Field(default=300.0, ge=0)
    # A training representation whose heartbeat is older than this lost its worker: it is marked
    # failed, and the next upload or round (or an engineer) asks for a new one.
    representation_stale_seconds: float = Field(default=120.0, gt=0)
    # Every worker lowers its own CPU priority to this niceness, and one that serves only the long
    # background queues (representations, simulations) 10 further (at most 19): where workers share
    # cores with the API, training takes what the API leaves instead of starving it. Idle cores
    # still go to training, so a machine of its own loses nothing.
    worker_nice: int = Field(default=5, ge=0, le=19)
    # Pools up to this many latents use exact nearest-neighbour search; larger ones an HNSW graph.
    latent_index_exact_max: int = 50_000

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'suggestlab.db'}"
        if not self.broker_url:
            self.broker_url = "filesystem://"
        if self.environment == "production" and self.secret_key == DEV_SECRET:
            raise ValueError("SUGGESTLAB_SECRET_KEY must be set to a real secret in production")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    @property
    def runs_embedded_worker(self) -> bool:
        return self.embedded_broker if self.embedded_worker is None else self.embedded_worker


@lru_cache
def get_settings() -> Settings:
    return Settings()
