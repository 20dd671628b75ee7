"""Stand-in for kaggle 2.2.5's KaggleApi, as far as kpbench uses it, answering from a fake Kaggle
described by the JSON file named in KPBENCH_FAKE_KAGGLE (see tests/kaggle_stand_in.py).

What it copies from the real client, so that kpbench meets the same behaviour:
- `import six` at import, undeclared (kaggle/models/upload_file.py);
- authenticate(): an access token checked online (_authenticate_with_access_token, _introspect_token:
  an unknown token is ignored), then the legacy key from kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY
  (_authenticate_with_legacy_apikey: present is enough, it is checked at the first call), else
  print_auth_help() on stdout and exit(1); read_config_file warns on stdout about a kaggle.json
  readable by others;
- every call: requests.ConnectionError without network, requests.HTTPError carrying the response for
  a refusal (kagglesdk/kaggle_http_client.py, KaggleHttpClient._prepare_response): 401 for bad
  credentials, 403 when the competition's rules are not accepted, 404 for an unknown competition.
"""

import json
import os
import shutil
import sys
from os.path import expanduser
from pathlib import Path

import requests
import six  # noqa: F401  (kaggle 2.2.5 imports it without declaring it)
from kagglesdk import get_access_token_from_env


def server():
    return json.loads(Path(os.environ["KPBENCH_FAKE_KAGGLE"]).read_text())


def print_auth_help():
    print(
        "Authentication required to call the Kaggle API.\n"
        "\n"
        "First, you will need a Kaggle account. You can sign up at\n"
        "  https://www.kaggle.com/account/login\n"
        "\n"
        "Recommended: log in with OAuth via a web-based authorization flow.\n"
        "No token to manage; credentials are cached locally for you.\n"
        "    kaggle auth login\n"
        "\n"
        "If you'd rather not use OAuth, generate an API token at\n"
        '  https://www.kaggle.com/settings/api  (click "Generate New Token" under "API")\n'
        "and supply it to the CLI in one of these ways:\n"
        "\n"
        "  Option A: Environment variable\n"
        "    export KAGGLE_API_TOKEN=xxxxxxxxxxxxxx  # token copied from the settings UI\n"
        "\n"
        "  Option B: API token file\n"
        "    Save the token to ~/.kaggle/access_token"
    )


def _call(endpoint, status=200):
    """One request to api.kaggle.com as the fake server answers it."""
    url = f"https://api.kaggle.com/v1/{endpoint}"
    if server().get("offline"):
        raise requests.ConnectionError(f"HTTPSConnectionPool(host='api.kaggle.com', port=443): Max retries "
                                       f"exceeded with url: /v1/{endpoint} (Caused by NameResolutionError)")
    if status >= 400:
        response = requests.Response()
        response.status_code = status
        response.url = url
        raise requests.HTTPError(f"{status} Client Error for url: {url}", response=response)


class KaggleApi:
    CONFIG_NAME_USER = "username"
    CONFIG_NAME_KEY = "key"
    CONFIG_NAME_TOKEN = "token"

    config_dir = os.environ.get("KAGGLE_CONFIG_DIR") or os.path.join(expanduser("~"), ".kaggle")
    config = os.path.join(config_dir, "kaggle.json")

    def authenticate(self):
        self.config_values = self._read_config()
        token, _ = get_access_token_from_env()
        if token:
            _call("security.OAuthService/IntrospectToken")
            if token in server().get("tokens", []):
                self.config_values[self.CONFIG_NAME_TOKEN] = token
                return
        if self.CONFIG_NAME_USER in self.config_values and self.CONFIG_NAME_KEY in self.config_values:
            return
        print_auth_help()
        exit(1)

    def _read_config(self):
        values = {}
        if os.path.exists(self.config):
            if os.stat(self.config).st_mode & 0o044:
                print("Warning: Your Kaggle API key is readable by other users on this system! "
                      f"To fix this, you can run 'chmod 600 {self.config}'")
            values.update(json.loads(Path(self.config).read_text()))
        for key, value in os.environ.items():
            if key.startswith("KAGGLE_"):
                values[key.replace("KAGGLE_", "", 1).lower()] = value
        return values

    def competition_download_files(self, competition, path=None, force=False, quiet=True, unzip=False):
        config = self.config_values  # AttributeError before authenticate(), as in the real client
        fake = server()
        token = config.get(self.CONFIG_NAME_TOKEN)
        legacy = fake.get("keys", {}).get(config.get(self.CONFIG_NAME_USER)) == config.get(self.CONFIG_NAME_KEY)
        endpoint = "competitions.CompetitionApiService/DownloadDataFiles"
        _call(endpoint, 401 if not (token or legacy) else 200)
        if competition not in fake.get("competitions", {}):
            _call(endpoint, 404)
        if not fake["competitions"][competition]["rules_accepted"]:
            _call(endpoint, 403)
        if not quiet:
            print(f"Downloading {competition}.zip to {path}", file=sys.stderr)
        shutil.copy(fake["competitions"][competition]["archive"], Path(path) / f"{competition}.zip")
