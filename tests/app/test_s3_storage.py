"""S3-compatible storage against a real S3 server (moto's server mode, on loopback): uploads land in
the bucket, the worker reads them from there and writes its artifacts there too."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import numpy as np
import pytest

from tests.conftest import LiveService, _free_port, start_service, wait_for_round
from tests.factories import create_project, digits_zip, upload


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = shutil.which("moto_server")
    if server is None:
        pytest.fail("moto_server is missing: pip install -e '.[dev]' installs moto[server]")
    port = _free_port()
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def s3_service(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[LiveService]:
    env = {
        "SUGGESTLAB_STORAGE": "s3",
        "SUGGESTLAB_S3_ENDPOINT_URL": s3_endpoint,
        "SUGGESTLAB_S3_BUCKET": "suggestlab-test",
        "SUGGESTLAB_S3_ACCESS_KEY": "test",
        "SUGGESTLAB_S3_SECRET_KEY": "test",
    }
    service = start_service(tmp_path_factory.mktemp("s3"), env, separate_worker=False, name="s3")
    yield service
    service.stop()


def test_images_and_artifacts_live_in_the_bucket(s3_service: LiveService, s3_endpoint: str) -> None:
    # No representation: a latent-space strategy trains a VAE, so its weights are among the artifacts.
    project = create_project(s3_service.admin, vae_epochs=3, latent_dim=8, representation="none")
    report = upload(
        s3_service.admin, project["id"], [("pool.zip", digits_zip(np.arange(40), with_labels=False))]
    ).json()
    assert len(report["accepted"]) == 40
    created = s3_service.admin.post(
        f"/projects/{project['id']}/rounds", json={"strategy": "typiclust", "batch_size": 5}
    )
    state = wait_for_round(s3_service.admin, created.json()["id"])
    assert state["status"] == "ready", state
    image = s3_service.admin.get(f"/images/{report['accepted'][0]}/file")
    assert image.status_code == 200 and image.content[:4] == b"\x89PNG"

    bucket = boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="suggestlab-test")["Contents"]]
    prefix = f"projects/{project['id']}/"
    assert sum(k.startswith(prefix + "images/") for k in keys) == 40
    assert {prefix + f"rounds/{state['id']}/vae.pt", prefix + f"rounds/{state['id']}/latents.npz"} <= set(keys)
    assert not (Path(s3_service.data_dir) / "objects").exists()
