"""docs.md keeps up with the code: every route, error code, config key and file is named in it,
in at most 2,000 words; a file may be named by a glob pattern in the Files table."""

import configparser
import fnmatch
import re
import subprocess

import pytest

from queues import error_handlers, errors
from queues.config import _SECTIONS
from tests.conftest import REPO

DOCS = (REPO / "docs.md").read_text()


def test_docs_name_every_route(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: m.group(1).upper(), rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert f"{method} {path}" in DOCS, f"docs.md does not name {method} {path}"


def test_docs_name_every_error_code():
    classes = [
        c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.QueueServiceError)
    ]
    codes = {cls.code for cls in classes}
    codes |= set(error_handlers._CODES_BY_STATUS.values())
    for code in codes:
        assert f"`{code}`" in DOCS, f"docs.md does not name the error code {code}"


def test_docs_name_every_config_key():
    parser = configparser.ConfigParser()
    parser.read(REPO / "config.ini")
    assert set(parser.sections()) == set(_SECTIONS)
    for section in parser.sections():
        for key in parser[section]:
            assert f"`[{section}] {key}`" in DOCS, f"docs.md does not name [{section}] {key}"
    assert "`[queues] max_waiting_pulls`" in DOCS


def _described_files():
    """Tracked files, less the documents themselves and the empty package markers."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    markers = {"queues/__init__.py", "queues/memory/__init__.py", "storage/__init__.py"}
    skipped = {"README.md", "docs.md", ".gitignore", *markers}
    return [path for path in tracked.stdout.split() if path not in skipped]


def _files_table_patterns():
    """The names and glob patterns in the first column of the Files table."""
    table = DOCS.split("## Files", 1)[1].split("\n## ", 1)[0]
    cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return [pattern for cell in cells for pattern in re.findall(r"`([^`]+)`", cell)]


@pytest.mark.parametrize("path", _described_files())
def test_docs_describe_every_file(path):
    patterns = _files_table_patterns()
    assert any(fnmatch.fnmatchcase(path, p) for p in patterns), f"docs.md does not describe {path}"


@pytest.mark.parametrize("pattern", _files_table_patterns())
def test_docs_name_only_files_that_exist(pattern):
    assert any(fnmatch.fnmatchcase(path, pattern) for path in _described_files()), pattern


def test_docs_stay_concise():
    assert len(DOCS.split()) <= 2000
