"""Which code made a run: the commit and whether the tree had uncommitted edits.

Recorded in every run.json by the launcher (an EC2 instance runs the launcher's bundle, so the
launcher's version is the instance's); the paper flags results made by different versions. A code
edit never reruns a run on its own: the version is a record, not part of the run's config hash.
"""

import subprocess

from kpbench import REPO_ROOT, __version__


def _git(*args):
    """git's answer, or None where there is no git or no checkout: a missing version never fails a run."""
    try:
        result = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def code_version():
    """{"commit", "dirty", "package"}; commit and dirty are null outside a git checkout."""
    commit = _git("rev-parse", "HEAD")
    # Only tracked source counts as "dirty": results, logs and builds are untracked or ignored.
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if commit else None, "package": __version__}


def code_label(run):
    """The code version a run was made by, as the paper prints it."""
    code = run.get("code") or {}
    if not code.get("commit"):
        return "not recorded"
    return code["commit"][:12] + ("-dirty" if code.get("dirty") else "")
