"""ops/bundle.sh: the air-gap bundle carries the images and installs them with `docker load`."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import uuid

import pytest

from ops.composectl import ROOT, Compose, Emulator, docker, emulator_rows, wait_for

from .conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_bundle_loads_and_runs_on_a_host_without_the_images(docker_images, tmp_path):
    # Unique tags stand for "images this host does not have": removed after the
    # bundle is made, they must come back from the tarball alone.
    tag = uuid.uuid4().hex[:10]
    edge_img, mosq_img = f"zbe-bundle-test/edge:{tag}", f"zbe-bundle-test/mosquitto:{tag}"
    docker("tag", "zerobus-edge:local-test", edge_img)
    docker("tag", "zerobus-edge-local/mosquitto:2", mosq_img)
    ids = {img: docker("image", "inspect", "-f", "{{.Id}}", img).stdout.strip() for img in (edge_img, mosq_img)}
    project = None
    try:
        env = {**os.environ, "EDGE_IMAGE": edge_img, "MOSQUITTO_IMAGE": mosq_img,
               "BUNDLE_OUT": str(tmp_path / "dist"), "BUNDLE_GZIP": "1"}
        made = subprocess.run(["bash", "ops/bundle.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        print(made.stdout, made.stderr)
        assert made.returncode == 0, made.stderr
        bundles = list((tmp_path / "dist").glob("zerobus-edge-*-bundle.tar"))
        assert len(bundles) == 1
        for img in (edge_img, mosq_img):
            docker("rmi", img)
            assert docker("image", "inspect", img, check=False).returncode != 0

        with tarfile.open(bundles[0]) as tar:
            tar.extractall(tmp_path / "host", filter="data")
        (bundle_dir,) = (tmp_path / "host").iterdir()
        for f in ("install.sh", "docker-compose.yml", "docker-compose.production.yml", ".env.example",
                  "ops/compose/edge.yaml", "images.tar.gz", "SHA256SUMS", "ops/drill.py", "ops/drill.md"):
            assert (bundle_dir / f).exists(), f
        assert not (bundle_dir / ".env").exists()  # never ships anyone's secrets

        installed = subprocess.run(["sh", "./install.sh"], cwd=bundle_dir, capture_output=True, text=True, timeout=600)
        print(installed.stdout, installed.stderr)
        assert installed.returncode == 0, installed.stderr
        for img, image_id in ids.items():
            assert docker("image", "inspect", "-f", "{{.Id}}", img).stdout.strip() == image_id
        dotenv = (bundle_dir / ".env").read_text()
        assert f"EDGE_IMAGE={edge_img}" in dotenv and f"MOSQUITTO_IMAGE={mosq_img}" in dotenv

        # The unpacked bundle is a working appliance: data reaches its emulator.
        project = Compose(f"zbebundle{uuid.uuid4().hex[:8]}", ["docker-compose.yml"], cwd=bundle_dir,
                          env={"ADMIN_PORT": str(free_port()), "ZEROBUS_HTTP_PORT": str(free_port())})
        project.up("zerobus", "edge")
        sink = wait_for(lambda: Emulator.of(project), timeout=60, what="the emulator")
        wait_for(lambda: emulator_rows(sink.stats()) > 0, timeout=90,
                 what="first reading through the bundled images")

        # The drill tool runs from the bundle alone (it imports nothing from the repo).
        drill = subprocess.run([sys.executable, "-I", "ops/drill.py", "--help"], cwd=bundle_dir,
                               capture_output=True, text=True, timeout=60)
        assert drill.returncode == 0 and "--kill-during-drain" in drill.stdout, drill.stderr

        damaged = bundle_dir / "docker-compose.yml"
        damaged.write_text(damaged.read_text() + "\n# tampered\n")
        refused = subprocess.run(["sh", "./install.sh"], cwd=bundle_dir, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and "checksum" in refused.stderr
    finally:
        if project is not None:
            print(project.logs(tail=60))
            project.down(volumes=True)
        for img in (edge_img, mosq_img):
            docker("rmi", img, check=False)
