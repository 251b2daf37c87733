"""The AsyncAPI documents pass the official AsyncAPI parser (npm `@asyncapi/parser` 3):
no diagnostic of severity error.

The parser is installed once into a cache directory (`KRANJ_TEST_NPM_CACHE`, default
`~/.cache/kranj-za-vse/asyncapi-parser`; about 10 s the first time) with node and npm.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kranj import docs

pytestmark = pytest.mark.integration

PARSER_VERSION = "3"
CACHE = Path(os.environ.get("KRANJ_TEST_NPM_CACHE", Path.home() / ".cache" / "kranj-za-vse" / "asyncapi-parser"))
SCRIPT = r"""
import { Parser } from '@asyncapi/parser';
import { readFileSync } from 'node:fs';
const parser = new Parser();
const severities = ['error', 'warning', 'info', 'hint'];
const report = {};
for (const file of process.argv.slice(2)) {
  const { diagnostics } = await parser.parse(readFileSync(file, 'utf8'), { source: file });
  report[file] = diagnostics.map((d) => ({
    severity: severities[d.severity] ?? String(d.severity),
    code: String(d.code),
    message: d.message,
    path: (d.path || []).join('.'),
  }));
}
console.log(JSON.stringify(report));
"""


def parser_dir() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed to run the official AsyncAPI parser"
    marker = CACHE / "node_modules" / "@asyncapi" / "parser" / "package.json"
    if not marker.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
                str(CACHE),
                f"@asyncapi/parser@{PARSER_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"npm install @asyncapi/parser failed: {proc.stderr[-2000:]}"
    (CACHE / "validate.mjs").write_text(SCRIPT)
    return CACHE


def test_asyncapi_documents_have_no_errors(tmp_path: Path) -> None:
    folder = parser_dir()
    files = []
    for relative, content in docs.render_all().items():
        if relative.startswith("asyncapi/"):
            path = tmp_path / relative.replace("/", "-")
            path.write_text(content)
            files.append(str(path))
    assert len(files) == len(docs.SERVICES) + 1
    proc = subprocess.run(
        ["node", str(folder / "validate.mjs"), *files],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    errors = [
        f"{Path(file).name}: {d['code']}: {d['message']} at {d['path']}"
        for file, diagnostics in report.items()
        for d in diagnostics
        if d["severity"] == "error"
    ]
    assert not errors, "\n".join(errors)
    assert set(report) == set(files)
