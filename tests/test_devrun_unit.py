"""What `offload run` starts for a topology: names, ports, the front, the emulator's targets."""

from __future__ import annotations

from offload.devrun import local_processes
from offload.settings import load_settings


def _argv_after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_two_web_and_two_worker_instances_each_get_a_gunicorn_a_port_and_their_share() -> None:
    settings = load_settings(
        {
            "WEB_INSTANCES": 2,
            "WORKER_INSTANCES": 2,
            "WEB_PORT": 7000,
            "WEB_INSTANCE_PORT": 7010,
            "WORKER_PORT": 7020,
        },
        environ={},
    )
    specs = {spec.name: list(spec.argv) for spec in local_processes(settings)}
    assert set(specs) == {
        "emulator", "web-1", "web-2", "front", "worker-1", "worker-2", "reconciler",
    }  # fmt: skip
    assert _argv_after(specs["web-1"], "--bind") == ["127.0.0.1:7010"]
    assert _argv_after(specs["web-2"], "--bind") == ["127.0.0.1:7011"]
    assert _argv_after(specs["front"], "--listen") == ["127.0.0.1:7000"]
    assert _argv_after(specs["front"], "--backend") == ["127.0.0.1:7010", "127.0.0.1:7011"]
    assert _argv_after(specs["worker-1"], "--bind") == ["127.0.0.1:7020"]
    assert _argv_after(specs["worker-2"], "--bind") == ["127.0.0.1:7021"]
    both = "http://127.0.0.1:7020,http://127.0.0.1:7021"
    emulator = specs["emulator"]
    assert f"worker={both}" in _argv_after(emulator, "--appengine-service")
    # HTTP targets (OFFLOAD_TASK_TARGET=http) name the first worker: it stands for both.
    assert _argv_after(emulator, "--http-target-alias") == [f"http://127.0.0.1:7020={both}"]


def test_one_instance_of_each_is_the_plain_three_processes() -> None:
    settings = load_settings({}, environ={})
    names = [spec.name for spec in local_processes(settings)]
    assert names == ["emulator", "web", "worker", "reconciler"]
    emulator = list(local_processes(settings)[0].argv)
    assert "--http-target-alias" not in emulator
