"""The code an EC2 instance runs: this kpbench package as the launcher has it, byte-stable."""

import io
import tarfile
from pathlib import Path

from kpbench import PACKAGE_ROOT


def code_bundle():
    """The kpbench package as a tar.gz (no caches), byte-stable for the same sources."""
    package = PACKAGE_ROOT
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(package.rglob("*")):
            if "__pycache__" in path.parts or path.is_dir():
                continue
            info = tar.gettarinfo(path, arcname=str(Path("kpbench") / path.relative_to(package)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()
