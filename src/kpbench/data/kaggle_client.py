"""The official Kaggle client, kept at arm's length: imported and called with its console output
swallowed, every way it fails turned into one plain KpbenchError that says what to do.

Written against kaggle 2.2.5 and kagglesdk 0.1.38; the comments name the client code relied on.
No message here ever contains a credential: tokens are only ever passed on, never formatted."""

import contextlib
import io
from pathlib import Path

from kpbench import KpbenchError

CREDENTIALS_HELP = (
    "Create an API token in your Kaggle account's settings (https://www.kaggle.com/settings/api, "
    "\"Generate New Token\") and set it as KAGGLE_API_TOKEN or save it to ~/.kaggle/access_token, "
    "or run `kaggle auth login`. The legacy ~/.kaggle/kaggle.json (or KAGGLE_USERNAME and KAGGLE_KEY) "
    "works too. Without Kaggle, use data.source: synthetic, or data.source: path with a copy "
    "downloaded elsewhere.")
# kagglesdk.kaggle_env.get_access_token_from_env names where it found a token with these labels.
_TOKEN_SOURCES = {"KAGGLE_API_TOKEN": "the KAGGLE_API_TOKEN variable", "access_token": "~/.kaggle/access_token"}


@contextlib.contextmanager
def _quiet():
    """Swallow what the client prints: its ~17-line login help goes to stdout on import and on failed
    authentication (kaggle/__init__.py and print_auth_help in kaggle/api/kaggle_api_extended.py),
    retry notices to stderr (KaggleApi.download_file). kpbench's own message replaces them."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def download_competition(competition, dest):
    """Download the competition's archive into `dest` and return its path."""
    api = _client()
    with _quiet(), _explained(competition):
        _authenticate(api)
        api.competition_download_files(competition, path=str(dest), quiet=True)
    archives = sorted(Path(dest).glob("*.zip"))
    if not archives:
        raise KpbenchError(f"Kaggle download of '{competition}' produced no archive in {dest}")
    return archives[0]


def _client():
    """A KaggleApi, or a plain message when the installed client cannot even be imported."""
    try:
        with _quiet():  # importing kaggle authenticates and, without credentials, prints its help
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ModuleNotFoundError as exc:
        module = (exc.name or "kaggle").split(".")[0]
        if module == "kaggle":
            raise KpbenchError("data.source is 'kaggle' but the Kaggle client is not installed: "
                               "pip install 'kaggle>=2.2'") from None
        # kaggle 2.2.5 imports `six` (kaggle/models/upload_file.py) without declaring it
        raise KpbenchError(f"the Kaggle client cannot be imported: the Python module '{module}' it needs "
                           f"is not installed; run `pip install {module}`, or use data.source: path "
                           "with a copy downloaded elsewhere") from None
    except (Exception, SystemExit) as exc:
        # kaggle 1.x (what pip picks on Python 3.10) authenticates at import and raises without
        # credentials; kaggle 2.x's kaggle/__init__.py catches that itself
        raise KpbenchError(f"the Kaggle client failed at import ({type(exc).__name__}); kpbench needs "
                           "kaggle >= 2.2 on Python >= 3.11") from None
    return KaggleApi()


def _authenticate(api):
    """KaggleApi.authenticate tries, in order, an access token (KAGGLE_API_TOKEN, ~/.kaggle/access_token,
    checked online), the legacy key (kaggle.json or KAGGLE_USERNAME and KAGGLE_KEY), the OAuth
    credentials of `kaggle auth login`; with none it prints its help and calls exit(1)."""
    try:
        api.authenticate()
    except SystemExit:
        from kagglesdk import get_access_token_from_env

        _, source = get_access_token_from_env()
        if source:  # a token that _introspect_token found invalid or expired, and nothing else
            raise KpbenchError(f"Kaggle did not accept the API token in {_TOKEN_SOURCES.get(source, source)}"
                               f" (expired or revoked?). {CREDENTIALS_HELP}") from None
        raise KpbenchError(f"Kaggle credentials not found. {CREDENTIALS_HELP}") from None


@contextlib.contextmanager
def _explained(competition):
    """The client's failures are requests exceptions (kagglesdk/kaggle_http_client.py,
    KaggleHttpClient._prepare_response raises HTTPError with the response attached)."""
    import requests  # the client's own dependency, there once the client imported

    try:
        yield
    except (requests.ConnectionError, requests.Timeout):
        raise KpbenchError("cannot reach Kaggle (api.kaggle.com): check the network connection or "
                           "proxy, or use data.source: path with a copy downloaded elsewhere") from None
    except requests.HTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        raise KpbenchError(_refusal(status, competition)) from None
    except requests.RequestException as exc:
        raise KpbenchError(f"Kaggle download of '{competition}' failed: {type(exc).__name__}") from None


def _refusal(status, competition):
    """What an HTTP status from Kaggle means for this download, and what to do about it."""
    if status == 401:
        return f"Kaggle rejected the credentials (401). {CREDENTIALS_HELP}"
    if status == 403:
        return (f"Kaggle refused the download of '{competition}' (403): accept the competition's rules "
                f"at https://www.kaggle.com/c/{competition}/rules while logged in, then run again.")
    if status == 404:
        return (f"Kaggle has no competition named '{competition}' (404): check data.competition "
                "(the original study's is facial-keypoints-detection).")
    return f"Kaggle refused the download of '{competition}' (HTTP {status})."
