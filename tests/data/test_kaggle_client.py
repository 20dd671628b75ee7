"""The Kaggle client as kaggle 2.2.5 and kagglesdk 0.1.38 behave, played by tests/stand_ins: every
credential form works, every failure is one plain message with what to do, nothing of the client's
own output reaches the user, and no credential is ever shown."""

import http.server
import json
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
import yaml

from kaggle_stand_in import KEY, TOKEN, fake_kaggle  # noqa: F401  (a fixture)
from kpbench import KpbenchError
from kpbench.data.kaggle_client import download_competition

REPO = Path(__file__).resolve().parents[2]
COMPETITION = "facial-keypoints-detection"


@pytest.fixture
def kaggle(fake_kaggle, tmp_path):  # noqa: F811
    """The fake Kaggle with the competition's (stand-in) archive, rules accepted."""
    archive = tmp_path / "archive.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
    fake_kaggle.competition(COMPETITION, archive)
    return fake_kaggle


def _fails(tmp_path, capfd, competition=COMPETITION):
    """The KpbenchError message of a download, checked for what must never show."""
    with pytest.raises(KpbenchError) as info:
        download_competition(competition, tmp_path)
    output = capfd.readouterr()
    message = str(info.value)
    assert output.out == "" and output.err == "", "the client's own output reached the user"
    assert TOKEN not in message and KEY not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    return message


@pytest.mark.parametrize("form", ["token_in_env", "token_file", "token_file_txt", "token_path_in_env",
                                  "legacy_json", "legacy_env"])
def test_every_current_credential_form_downloads_quietly(kaggle, tmp_path, capfd, form):
    if form == "token_file_txt":
        kaggle.token_file(name="access_token.txt")
    elif form == "token_path_in_env":
        (tmp_path / "token").write_text(TOKEN)
        kaggle.token_in_env(str(tmp_path / "token"))
    else:
        getattr(kaggle, form)()
    (tmp_path / "download").mkdir()
    assert download_competition(COMPETITION, tmp_path / "download") == tmp_path / "download" / f"{COMPETITION}.zip"
    assert capfd.readouterr() == ("", "")


def test_without_credentials_the_current_instructions_replace_the_clients_help(kaggle, tmp_path, capfd):
    message = _fails(tmp_path, capfd)
    assert message.startswith("Kaggle credentials not found.")
    for instruction in ("https://www.kaggle.com/settings/api", "KAGGLE_API_TOKEN", "~/.kaggle/access_token",
                        "kaggle auth login", "kaggle.json", "data.source: synthetic"):
        assert instruction in message


@pytest.mark.parametrize("where", ["token_in_env", "token_file"])
def test_a_rejected_token_is_named_by_where_it_was_found(kaggle, tmp_path, capfd, where):
    kaggle.set(tokens=[])
    getattr(kaggle, where)()
    message = _fails(tmp_path, capfd)
    place = {"token_in_env": "the KAGGLE_API_TOKEN variable", "token_file": "~/.kaggle/access_token"}[where]
    assert message.startswith(f"Kaggle did not accept the API token in {place}")
    assert "kaggle auth login" in message


@pytest.mark.parametrize("credentials", ["token_in_env", "legacy_json"])
def test_without_network_the_message_says_kaggle_is_unreachable(kaggle, tmp_path, capfd, credentials):
    getattr(kaggle, credentials)()
    kaggle.set(offline=True)
    assert _fails(tmp_path, capfd).startswith("cannot reach Kaggle (api.kaggle.com)")


def test_a_wrong_legacy_key_is_a_401_with_instructions(kaggle, tmp_path, capfd):
    kaggle.legacy_env(key="f" * 32)
    message = _fails(tmp_path, capfd)
    assert message.startswith("Kaggle rejected the credentials (401).") and "kaggle auth login" in message
    assert "f" * 32 not in message


def test_rules_not_accepted_is_a_403_that_links_the_rules(kaggle, tmp_path, capfd):
    kaggle.token_in_env()
    kaggle.competition(COMPETITION, "unused.zip", rules_accepted=False)
    assert (f"accept the competition's rules at https://www.kaggle.com/c/{COMPETITION}/rules"
            in _fails(tmp_path, capfd))


def test_an_unknown_competition_is_a_404(kaggle, tmp_path, capfd):
    kaggle.token_in_env()
    assert _fails(tmp_path, capfd, "facial-keypoint-detection").startswith(
        "Kaggle has no competition named 'facial-keypoint-detection' (404)")


def test_a_missing_six_is_a_plain_message_not_our_dependency(kaggle, tmp_path, capfd, monkeypatch):
    """kaggle 2.2.5 imports six without declaring it; kpbench names the gap and does not fill it."""
    kaggle.token_in_env()
    monkeypatch.setitem(sys.modules, "six", None)
    message = _fails(tmp_path, capfd)
    assert "the Python module 'six' it needs is not installed" in message and "pip install six" in message
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in dependencies if d.split("=")[0].split(">")[0].strip() == "six"]


def test_an_old_client_is_a_plain_message(kaggle, tmp_path, capfd):
    kaggle.set(version="1.7.4.5")  # what pip picks on Python 3.10: it raises at import
    assert "kaggle >= 2.2 on Python >= 3.11" in _fails(tmp_path, capfd)


def test_a_missing_client_is_a_plain_message(kaggle, tmp_path, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "kaggle", None)
    assert "the Kaggle client is not installed" in _fails(tmp_path, capfd)


def test_python_and_client_versions_are_pinned_where_the_client_works():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"].startswith(">=3.11")
    assert "kaggle>=2.2" in project["dependencies"]
    conda = yaml.safe_load((REPO / "environment.yml").read_text())["dependencies"]
    assert "python=3.11" in conda and "kaggle>=2.2" in conda[-1]["pip"]


def test_fetch_with_a_token_and_no_network_ends_in_one_line(kaggle, tmp_path):
    """The issue's measured case, through the command Snakemake runs: a token, no network."""
    kaggle.token_in_env()
    kaggle.set(offline=True)
    out = tmp_path / "raw"
    result = subprocess.run([sys.executable, "-m", "kpbench", "fetch", "--data-config",
                             json.dumps({"source": "kaggle", "competition": COMPETITION}), "--out", str(out)],
                            capture_output=True, text=True, env=kaggle.env())
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("kpbench fetch: error: cannot reach Kaggle") and result.stderr.count("\n") == 1
    assert TOKEN not in result.stderr
    assert not list(out.iterdir())


# --- the installed client itself, against a local server answering as api.kaggle.com does ---------

class _KaggleApiServer(http.server.BaseHTTPRequestHandler):
    """Answers the two calls kpbench makes (kagglesdk's KaggleHttpClient posts to /v1/<service>/<method>):
    a token introspection that finds no active token, and a download refused with `status`."""
    status = 403

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/security.OAuthService/IntrospectToken":
            status, body = 200, {"active": False}
        else:
            status, body = self.status, {"code": self.status, "message": "refused"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def real_kaggle(monkeypatch, tmp_path):
    """The installed client, imported afresh in an empty home, its API endpoint a local server."""
    pytest.importorskip("kaggle", reason="the installed client is checked where it is installed")
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in [n for n in sys.modules if n.split(".")[0] in ("kaggle", "kagglesdk")]:
        monkeypatch.delitem(sys.modules, name)
    from kagglesdk import kaggle_env

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KaggleApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.PROD,
                        f"http://127.0.0.1:{server.server_address[1]}")
    yield monkeypatch
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status, start", [
    (401, "Kaggle rejected the credentials (401)"),
    (403, f"Kaggle refused the download of '{COMPETITION}' (403)"),
    (404, f"Kaggle has no competition named '{COMPETITION}' (404)"),
])
def test_the_installed_client_refusals_read_as_the_stand_in_plays_them(real_kaggle, tmp_path, capfd, status, start):
    real_kaggle.setattr(_KaggleApiServer, "status", status)
    real_kaggle.setenv("KAGGLE_USERNAME", "someone")
    real_kaggle.setenv("KAGGLE_KEY", KEY)
    assert _fails(tmp_path, capfd).startswith(start)


def test_the_installed_client_with_an_inactive_token_or_none_reads_as_the_stand_in_plays_it(real_kaggle, tmp_path,
                                                                                              capfd):
    assert _fails(tmp_path, capfd).startswith("Kaggle credentials not found.")
    real_kaggle.setenv("KAGGLE_API_TOKEN", TOKEN)
    assert _fails(tmp_path, capfd).startswith("Kaggle did not accept the API token in the KAGGLE_API_TOKEN variable")
