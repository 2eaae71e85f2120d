"""The stand-in images' cache key (latitude.stack.docker_images): a cached Debian base is reused
only for exactly what it was built from."""

from __future__ import annotations

from pathlib import Path

from latitude.stack import docker_images

DEPS = ["grpcio==1.85.1", "asyncpg==0.32.0"]


def test_key_is_stable_and_ignores_the_order_of_dependencies() -> None:
    assert docker_images.base_key(DEPS) == docker_images.base_key(list(reversed(DEPS)))


def test_key_changes_with_what_goes_in(monkeypatch) -> None:
    key = docker_images.base_key(DEPS)
    assert docker_images.base_key(["grpcio==1.85.2", "asyncpg==0.32.0"]) != key
    monkeypatch.setattr(docker_images, "PACKAGES", (*docker_images.PACKAGES, "curl"))
    assert docker_images.base_key(DEPS) != key
    monkeypatch.setattr(docker_images, "RECIPE_VERSION", docker_images.RECIPE_VERSION + 1)
    assert docker_images.base_key(DEPS) != key


def test_dependencies_are_the_pinned_runtime_ones(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["a==1", "b==2"]\n'
        '[project.optional-dependencies]\ndev = ["pytest==9"]\n'
    )
    assert docker_images.dependencies(pyproject) == ["a==1", "b==2"]


def test_cache_directory_can_be_moved(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LATITUDE_COMPOSE_CACHE", str(tmp_path))
    assert docker_images.cache_dir() == tmp_path
    monkeypatch.delenv("LATITUDE_COMPOSE_CACHE")
    assert docker_images.cache_dir() == docker_images.DEFAULT_CACHE
