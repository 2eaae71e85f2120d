"""Local stand-ins for the images docker-compose.yml names, for a Docker engine that can pull
nothing (no registry is reachable where the compose test runs).

One Debian bookworm root filesystem serves as both: PostgreSQL 15 and etcd from Debian's
packages, and latitude in a virtual environment at /opt/latitude (the regions' containers run
PostgreSQL, its fence keeper and its agent from this one image, as they would from the
Dockerfile's). It is imported once and tagged with each name the compose file defaults to (the
etcd image, ``latitude:local``), so the engine stores it once, which matters with the vfs
storage driver (every layer is a full copy). Its entrypoint, deploy/docker/postgres-entrypoint.sh,
execs any command but ``postgres`` as is, as the etcd and latitude images would run it.

Building the root filesystem (debootstrap, apt, the Python dependencies) takes minutes, so its
result is cached as a directory under ``/var/cache/latitude/compose`` (``LATITUDE_COMPOSE_CACHE``
to move it), keyed by a hash of everything that goes in: the package list, the recipe version and
latitude's pinned dependencies (about 300 MB; a changed key builds a new one beside the old,
which may be deleted). Only the checkout is installed afresh on every build, into a small
directory laid over the base in the one tar stream the engine imports. Delete the cache
directory to start cold. Needs root (debootstrap, chroot).

    python -m latitude.stack.docker_images [--tag NAME ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path

from latitude.errors import StackError
from latitude.stack.compose import DEFAULT_IMAGES

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO_ROOT / "deploy" / "docker" / "postgres-entrypoint.sh"
DEFAULT_CACHE = Path("/var/cache/latitude/compose")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# Bump when the recipe below changes in a way the package list does not show.
RECIPE_VERSION = 2
PACKAGES = (
    "postgresql-15",
    "postgresql-client-15",
    "etcd-server",
    "etcd-client",
    "gosu",
    "python3",
    "python3-venv",
)
# The names docker-compose.yml falls back to when its image variables are unset.
DEFAULT_TAGS = tuple(DEFAULT_IMAGES.values())
VENV = "/opt/latitude"
# The venv and PostgreSQL's programs first (as the postgres image has them on PATH).
PATH = f"{VENV}/bin:/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
PATH += ":/sbin:/bin"
# What the image needs of the official images it stands in for: postgres (uid 999, as in
# postgres:15, so the agent can share PGDATA), latitude (the Dockerfile's coordinator user),
# the etcd image's binary paths.
_USERS = tuple(
    command.split()
    for command in (
        "groupadd --system --gid 999 postgres",
        "useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql "
        "--shell /bin/bash postgres",
        "groupadd --system --gid 10001 latitude",
        "useradd --system --uid 10001 --gid latitude --create-home --home-dir /home/latitude "
        "--shell /usr/sbin/nologin latitude",
    )
)
# Nothing a container reads: apt's lists and archives, documentation, translations, perl (only
# postgresql-common's wrappers use it; PATH finds PostgreSQL's own programs first), and the LLVM
# that only PostgreSQL's JIT loads (without it the JIT is simply unavailable).
_PRUNE = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
    "usr/share/info",
    "usr/share/i18n",
    "usr/share/perl",
    "usr/lib/x86_64-linux-gnu/perl",
    "usr/lib/x86_64-linux-gnu/libLLVM-14.so.1",
    "usr/lib/x86_64-linux-gnu/libz3.so.4",
    "usr/lib/postgresql/15/lib/bitcode",
    "usr/lib/postgresql/15/lib/llvmjit.so",
    "usr/lib/postgresql/15/lib/llvmjit_types.bc",
)
_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def cache_dir() -> Path:
    return Path(os.environ.get("LATITUDE_COMPOSE_CACHE") or DEFAULT_CACHE)


def dependencies(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """latitude's pinned runtime dependencies, as pyproject.toml lists them."""
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def base_key(deps: Sequence[str]) -> str:
    """The cache key of the root filesystem: anything that changes what goes in changes it."""
    recipe = {
        "recipe": RECIPE_VERSION,
        "suite": SUITE,
        "packages": PACKAGES,
        "users": _USERS,
        "prune": _PRUNE,
        "dependencies": sorted(deps),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _run(argv: Sequence[str], what: str, **kwargs) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
        raise StackError(f"{what} failed ({argv[0]} exited {done.returncode}):\n{tail}")


def _chroot(rootfs: Path, *argv: str, what: str) -> None:
    _run(["chroot", str(rootfs), *argv], what, env=_APT_ENV)


def _wheels(deps: Sequence[str], into: Path) -> None:
    """Wheels of ``deps`` for this machine's Python, 3.11 like bookworm's, fetched from PyPI by
    the host (a chroot has no pip configuration)."""
    _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(into), *deps],
        "fetching latitude's dependencies",
    )


def _apt_install(rootfs: Path, *packages: str) -> None:
    _chroot(
        rootfs,
        *("apt-get", "install", "-y", "--no-install-recommends", *packages),
        what="installing " + " ".join(packages),
    )


def _make_base(deps: Sequence[str], rootfs: Path) -> None:
    _run(
        ["debootstrap", "--variant=minbase", SUITE, str(rootfs), MIRROR],
        f"debootstrap of Debian {SUITE}",
    )
    shutil.copy("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
    # No service starts inside the chroot while packages install.
    policy = rootfs / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    for argv in _USERS:  # before the packages, so that postgresql-common adopts uid 999
        _chroot(rootfs, *argv, what=f"adding user ({' '.join(argv)})")
    _chroot(rootfs, "apt-get", "update", what="apt-get update")
    _apt_install(rootfs, "postgresql-common")
    # The image holds binaries only: no "main" cluster created on install.
    conf = rootfs / "etc" / "postgresql-common" / "createcluster.conf"
    conf.write_text(
        conf.read_text().replace("#create_main_cluster = true", "create_main_cluster = false")
    )
    _apt_install(rootfs, *PACKAGES)
    for tool in ("etcd", "etcdctl"):  # where the etcd image has them
        (rootfs / "usr" / "local" / "bin" / tool).symlink_to(f"/usr/bin/{tool}")
    wheels = rootfs / "tmp" / "wheels"
    wheels.mkdir()
    _wheels(deps, wheels)
    _chroot(rootfs, "python3", "-m", "venv", VENV, what="creating the virtual environment")
    _chroot(
        rootfs,
        f"{VENV}/bin/pip",
        "install",
        "--quiet",
        "--no-index",
        "--find-links",
        "/tmp/wheels",
        *deps,
        what="installing latitude's dependencies",
    )
    shutil.rmtree(wheels)
    # The checkout is installed from outside (_stage_checkout): pip has nothing left to do here.
    _chroot(
        rootfs,
        f"{VENV}/bin/python3",
        "-m",
        "pip",
        "uninstall",
        "--yes",
        "--quiet",
        "pip",
        "setuptools",
        what="removing pip from the image",
    )
    policy.unlink()
    (rootfs / "etc" / "resolv.conf").unlink()
    for path in _PRUNE:
        target = rootfs / path
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def base_rootfs(deps: Sequence[str], cache: Path) -> Path:
    """The cached root filesystem for ``deps`` (a directory), built first if missing."""
    rootfs = cache / f"base-{base_key(deps)}"
    if rootfs.is_dir():
        return rootfs
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="latitude-base-", dir=cache) as work:
        partial = Path(work) / "rootfs"
        _make_base(deps, partial)
        partial.rename(rootfs)  # whole or not at all: an interrupted build leaves no base
    return rootfs


def _stage_checkout(into: Path) -> Path:
    """The checkout installed under ``into`` as it lies in the image (its package in the
    virtual environment's site-packages, its console scripts in the environment's bin), by
    this machine's pip and Python 3.11, like bookworm's: the cached base stays untouched and
    no copy of it is made. Built from a copy of what the package needs (the Dockerfile's
    list), so that the work tree gets no build/ directory."""
    source = into / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for package in ("latitude", "agent", "coordinator"):
        shutil.copytree(REPO_ROOT / package, source / package, ignore=ignore)
    staged = into / "staged"
    venv = staged / VENV.lstrip("/")
    site = venv / "lib" / "python3.11" / "site-packages"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-compile",
            "--target",
            str(site),
            str(source),
        ],
        "installing the checkout",
    )
    # pip --target puts the console scripts beside the packages, for this machine's Python.
    (site / "bin").rename(venv / "bin")
    for script in (venv / "bin").iterdir():
        lines = script.read_text().split("\n", 1)
        script.write_text(f"#!{VENV}/bin/python3\n{lines[1]}")
    _run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            "-d",
            f"{VENV}/lib/python3.11/site-packages",
            str(site),
        ],
        "compiling the checkout",
    )
    return staged


def _import(docker: Sequence[str], base: Path, staged: Path, tag: str) -> str:
    """One image from the base with the staged checkout laid over it, as one layer."""
    changes = [
        'ENTRYPOINT ["docker-entrypoint.sh"]',
        f"ENV PATH={PATH}",
        "ENV PGDATA=/var/lib/postgresql/data",
        "ENV LANG=C.UTF-8",
    ]
    flags = [arg for change in changes for arg in ("--change", change)]
    # One stream: the base, then what the checkout adds. The engine refuses a path twice in a
    # layer, so the directories the base has already are not listed again.
    added = [
        path.relative_to(staged)
        for path in sorted(staged.rglob("*"))
        if not (path.is_dir() and (base / path.relative_to(staged)).is_dir())
    ]
    listing = staged.parent / "added"
    listing.write_text("".join(f"./{path}\n" for path in added))
    packer = subprocess.Popen(
        [
            "tar",
            "-c",
            "--numeric-owner",
            "-C",
            str(base),
            ".",
            "-C",
            str(staged),
            "--no-recursion",
            "--files-from",
            str(listing),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        imported = subprocess.run(
            [*docker, "import", *flags, "-", tag],
            stdin=packer.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        packer.stdout.close()
        packer.wait()
    if imported.returncode != 0 or packer.returncode != 0:
        raise StackError(f"docker import failed: {imported.stderr.strip()}")
    return imported.stdout.strip()


def build(
    docker: Sequence[str], tags: Sequence[str] = DEFAULT_TAGS, cache: Path | None = None
) -> str:
    """Build the stand-in image and tag it ``tags``; ``docker`` is the client's argv prefix
    (e.g. ``["docker", "-H", "unix:///run/x.sock"]``). Returns the image id."""
    if os.geteuid() != 0:
        raise StackError("building the stand-in images needs root (debootstrap, chroot)")
    base = base_rootfs(dependencies(), cache or cache_dir())
    with tempfile.TemporaryDirectory(prefix="latitude-image-") as work:
        staged = _stage_checkout(Path(work))
        entrypoint = staged / "usr" / "local" / "bin" / "docker-entrypoint.sh"
        entrypoint.parent.mkdir(parents=True)
        shutil.copy(ENTRYPOINT, entrypoint)
        entrypoint.chmod(0o755)
        image = _import(docker, base, staged, tags[0])
    for tag in tags[1:]:
        _run([*docker, "tag", tags[0], tag], f"tagging {tag}")
    return image


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", action="append", help=f"image names (default: {DEFAULT_TAGS})")
    args = parser.parse_args(argv)
    docker = ["docker"]
    try:
        print(build(docker, tuple(args.tag or DEFAULT_TAGS)))
    except StackError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
