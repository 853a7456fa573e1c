"""The supply-chain gate (scripts/audit.py): a Cargo.lock with a known vulnerability fails unless
the one reviewed ignore file lists it with a reason; the project's own Cargo.lock passes.
cargo-audit runs for real against the offline RustSec snapshot in ../shared/advisory-db."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DB = pathlib.Path(os.environ.get("CMM_ADVISORY_DB", ROOT.parent / "shared" / "advisory-db"))

# smallvec 1.6.0 has RUSTSEC-2021-0003 (buffer overflow in insert_many), fixed in 1.6.1.
VULNERABLE_LOCK = """version = 3

[[package]]
name = "demo"
version = "0.1.0"
dependencies = ["smallvec"]

[[package]]
name = "smallvec"
version = "{version}"
source = "registry+https://github.com/rust-lang/crates.io-index"
"""

ENTRY = """[[ignore]]
id = "RUSTSEC-2021-0003"
crate = "smallvec"
{reason}
reviewed = "2026-12-02"
"""


@pytest.fixture(autouse=True)
def tools():
    have = shutil.which("cargo-audit") and (DB / "crates").is_dir()
    if not have:
        if os.environ.get("CMM_REQUIRE_TOOLS"):
            pytest.fail("cargo-audit or the advisory database is missing (scripts/dev tools)")
        pytest.skip("no cargo-audit or no ../shared/advisory-db")


def audit(tmp_path, lock_version, ignores=None):
    lock = tmp_path / "Cargo.lock"
    lock.write_text(VULNERABLE_LOCK.format(version=lock_version))
    ign = tmp_path / "audit-ignore.toml"
    ign.write_text(ignores or "")
    out = subprocess.run(
        [sys.executable, ROOT / "scripts" / "audit.py", "--db", DB, "--lock", lock, "--ignores", ign],
        capture_output=True, text=True, cwd=ROOT,
    )
    return out.returncode, out.stdout + out.stderr


def test_a_known_vulnerability_fails_and_says_how_to_fix_it(tmp_path):
    code, text = audit(tmp_path, "1.6.0")
    assert code == 1, text
    assert "RUSTSEC-2021-0003" in text and "cargo update -p smallvec" in text


def test_a_listed_vulnerability_with_its_reason_passes(tmp_path):
    code, text = audit(tmp_path, "1.6.0", ENTRY.format(reason='reason = "insert_many is never called"'))
    assert code == 0, text
    assert "accepted" in text


def test_an_entry_without_a_reason_fails(tmp_path):
    code, text = audit(tmp_path, "1.6.0", ENTRY.format(reason=""))
    assert code == 1, text
    assert "has no reason" in text


def test_an_entry_that_matches_nothing_any_more_fails(tmp_path):
    code, text = audit(tmp_path, "1.6.1", ENTRY.format(reason='reason = "was needed once"'))
    assert code == 1, text
    assert "matches nothing" in text


def test_the_projects_own_lock_passes():
    out = subprocess.run(
        [sys.executable, ROOT / "scripts" / "audit.py", "--db", DB],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
