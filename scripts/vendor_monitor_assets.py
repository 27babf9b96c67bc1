"""Vendor the dashboard's chart library (uPlot, MIT) into ``services/monitor/vendor_uplot.py``.

    python scripts/vendor_monitor_assets.py            # pinned version below
    python scripts/vendor_monitor_assets.py 1.6.32     # another version

It runs ``npm pack uplot@VERSION`` (the npm registry, nothing else), takes the minified IIFE build,
its stylesheet and the licence, and writes them as Python string constants with the tarball's
SHA-256. The assets live in a Python module, not in data files, so a plain ``pip install`` of the
project (the Docker images install /src without package-data rules) carries them and the dashboard
loads nothing from outside.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "1.6.32"
TARGET = Path(__file__).resolve().parent.parent / "services" / "monitor" / "vendor_uplot.py"


def _raw(text: str) -> str:
    quotes = '"' * 3
    if quotes in text or text.endswith(("\\", '"')):
        raise SystemExit("asset text cannot be embedded as a raw string")
    return "r" + quotes + text + quotes


def main(argv: list[str]) -> int:
    version = argv[0] if argv else VERSION
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", f"uplot@{version}"], cwd=tmp, check=True)
        tarball = next(Path(tmp).glob("uplot-*.tgz"))
        digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
        with tarfile.open(tarball) as tar:

            def read(name: str) -> str:
                member = tar.extractfile(f"package/{name}")
                assert member is not None, name
                return member.read().decode("utf-8")

            js = read("dist/uPlot.iife.min.js")
            css = read("dist/uPlot.min.css")
            licence = read("LICENSE")
    TARGET.write_text(
        "# ruff: noqa: E501\n"
        f'"""uPlot {version} (MIT licence, below), vendored by\n'
        f"scripts/vendor_monitor_assets.py from the npm package uplot@{version}\n"
        f"(tarball sha256 {digest}). Do not edit by hand.\n"
        '"""\n\n'
        f'VERSION = "{version}"\n'
        f'TARBALL_SHA256 = "{digest}"\n'
        f"LICENSE = {_raw(licence)}\n"
        f"CSS = {_raw(css)}\n"
        f"JS = {_raw(js)}\n",
        encoding="utf-8",
    )
    print(f"wrote {TARGET} (uplot {version}, sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
