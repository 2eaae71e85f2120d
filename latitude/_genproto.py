"""Generate latitude/v1 from proto/latitude/v1: the code behind ``scripts/genproto``.

``proto/`` is the include root, so ``import "latitude/v1/common.proto";`` in a .proto becomes
``from latitude.v1 import common_pb2`` in Python. protoc runs in a child process because
importing ``grpc_tools.protoc`` appends to ``sys.path`` and installs import hooks, which the
process that asked (a test run, say) should not inherit.

Run as ``python -m latitude._genproto`` from a source checkout; the output is committed, and
``tests/unit/test_proto_fresh.py`` fails when it is stale.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

from latitude.errors import LatitudeError

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
# Where the generated modules live, relative to the output (import) root.
PACKAGE = Path("latitude", "v1")
GENERATED_PATTERNS = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")


class GenerationError(LatitudeError):
    """protoc failed, or there is nothing to compile; the message carries protoc's output."""


def proto_files() -> list[str]:
    """The .proto files to compile, relative to PROTO_ROOT, in a fixed order."""
    source_dir = PROTO_ROOT / PACKAGE
    files = sorted(path.relative_to(PROTO_ROOT).as_posix() for path in source_dir.glob("*.proto"))
    if not files:
        raise GenerationError(f"no .proto files in {source_dir} (not a source checkout?)")
    return files


def generated_files(package_dir: Path) -> list[Path]:
    """The generated modules in package_dir, sorted by name (``__init__.py`` is not one)."""
    found = {path for pattern in GENERATED_PATTERNS for path in package_dir.glob(pattern)}
    return sorted(found, key=lambda path: path.name)


def generate(out_dir: Path) -> None:
    """Compile every .proto into out_dir, an import root: the files land in out_dir/latitude/v1."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir.resolve()
    _protoc(f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}")


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """The compiled protos with their comments (source info), for tests that inspect them."""
    with tempfile.TemporaryDirectory(prefix="latitude-genproto-") as tmp:
        out = Path(tmp, "descriptors.binpb")
        _protoc("--include_source_info", f"--descriptor_set_out={out}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _protoc(*options: str) -> None:
    # Input paths relative to the include root keep absolute paths out of the generated code.
    command = [sys.executable, "-m", "grpc_tools.protoc", "-I.", *options, *proto_files()]
    result = subprocess.run(command, cwd=PROTO_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise GenerationError(
            f"protoc failed (exit {result.returncode}):\n{result.stderr or result.stdout}"
        )
    if result.stderr:  # warnings (e.g. an unused import) are worth fixing, not hiding
        print(result.stderr, end="", file=sys.stderr)


def main() -> int:
    """Regenerate the committed package: write changed files, delete stale ones."""
    target = REPO_ROOT / PACKAGE
    with tempfile.TemporaryDirectory(prefix="latitude-genproto-") as tmp:
        try:
            generate(Path(tmp))
        except GenerationError as err:
            print(f"genproto: {err}", file=sys.stderr)
            return 1
        fresh = {path.name: path.read_bytes() for path in generated_files(Path(tmp) / PACKAGE)}
    for stale in generated_files(target):
        if stale.name not in fresh:
            stale.unlink()
            print(f"removed {stale.relative_to(REPO_ROOT)}")
    for name, content in fresh.items():
        path = target / name
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
            print(f"wrote   {path.relative_to(REPO_ROOT)}")
    print(f"{len(fresh)} generated files in {target.relative_to(REPO_ROOT)} are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
