"""Stand-in for kagglesdk 0.1.38's token lookup (kagglesdk/kaggle_env.py, get_access_token_from_env),
outside a Kaggle notebook: KAGGLE_API_TOKEN (the token, or the path of a file holding it), then
~/.kaggle/access_token, then ~/.kaggle/access_token.txt. Returns (token, where) or (None, None)."""

import os
from pathlib import Path


def _get_access_token_from_file(path):
    if not path or not Path(path).is_file():
        return None
    return Path(path).read_text().strip() or None


def get_access_token_from_env():
    access_token = os.environ.get("KAGGLE_API_TOKEN")
    if access_token:
        if Path(access_token).exists():
            return _get_access_token_from_file(access_token), "KAGGLE_API_TOKEN"
        return access_token, "KAGGLE_API_TOKEN"
    for name in ("access_token", "access_token.txt"):
        access_token = _get_access_token_from_file(os.path.expanduser(f"~/.kaggle/{name}"))
        if access_token:
            return access_token, "access_token"
    return None, None
