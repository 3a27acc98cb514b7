"""Schemathesis against the service's OpenAPI schema: no server error, responses as documented."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from serving_fixtures import API_KEY, Server

ST = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")


@pytest.mark.skipif(ST is None, reason="schemathesis is not installed (pip install -e '.[dev]')")
def test_schemathesis_finds_no_server_error(tmp_path):
    with Server(tmp_path, env={"PVWIND_MAX_FILES": "4"}) as srv:
        p = subprocess.run(
            [
                ST, "run", f"{srv.url}/openapi.json",
                # every check except three that do not fit this API by design:
                # - positive_data_acceptance: the schema cannot say "these bytes must be a decodable
                #   JPEG", so random uploads are rightly refused;
                # - negative_data_rejection: multipart fields are text, so a "number" sent as `site`
                #   is a valid string (and either auth header alone is enough);
                # - use_after_free: DELETE /v1/jobs/{id} cancels; the cancelled job and its partial
                #   results stay readable;
                "--checks", "all",
                "--exclude-checks", "positive_data_acceptance,negative_data_rejection,use_after_free",
                "--header", f"X-API-Key: {API_KEY}",
                "--max-examples", "15", "--seed", "1", "--workers", "1",
                # a hang still fails; a slow shared machine does not (a request once took over 60 s
                # there under load; speed is measured in bench/, never asserted in a test)
                "--request-timeout", "300",
                # `--checks all` also switches on max_response_time with a 10 s default (it cannot be
                # excluded by name): one upload of many images on the loaded 2-core machine took longer
                "--max-response-time", "300",
            ],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
        log = srv.log()
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-2000:]
    assert "Traceback" not in log, log[-4000:]
    assert " 500 " not in log
