"""The committed latitude/v1 must be exactly what scripts/genproto makes of proto/latitude/v1."""

from pathlib import Path

from latitude import _genproto

STALE = "latitude/v1 is stale: run scripts/genproto and commit the result"


def _contents(package_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in _genproto.generated_files(package_dir)}


def test_committed_generated_code_matches_the_protos(tmp_path: Path) -> None:
    _genproto.generate(tmp_path)
    fresh = _contents(tmp_path / _genproto.PACKAGE)
    committed = _contents(_genproto.REPO_ROOT / _genproto.PACKAGE)

    assert fresh, "protoc produced nothing"
    missing = sorted(fresh.keys() - committed.keys())
    extra = sorted(committed.keys() - fresh.keys())
    assert not missing and not extra, f"{STALE} (missing: {missing}, not generated: {extra})"
    differing = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not differing, f"{STALE} (differ: {differing})"
