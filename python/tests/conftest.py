"""Where the fixtures and the CLI are. The CLI is the reference the package must agree with:
$BITFSCK_CLI, else build/bitfsck or build-fast/bitfsck in the repository."""
import json
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_ckpts"


def _cli():
    env = os.environ.get("BITFSCK_CLI")
    if env:
        return pathlib.Path(env)
    for d in ("build", "build-fast"):
        p = REPO / d / "cli" / "bitfsck"
        if p.exists():
            return p
    return None


@pytest.fixture(scope="session")
def cli():
    p = _cli()
    if p is None or not p.exists():
        pytest.skip("no bitfsck CLI built (set BITFSCK_CLI or build build/ or build-fast/)")
    return p


def run_cli_json(cli, *args):
    """The CLI's --json document; exit codes 0 and 3-6 are verdicts, not failures."""
    r = subprocess.run([str(cli), *args, "--json"], capture_output=True, text=True)
    assert r.returncode in (0, 3, 4, 5, 6), r.stderr
    return json.loads(r.stdout)
