"""The `fake_kaggle` fixture: the stand-in Kaggle client of tests/stand_ins (kaggle 2.2.5 and
kagglesdk 0.1.38 as far as kpbench uses them) imported in place of any installed one, talking to a
fake Kaggle that a test describes, in a home folder without credentials."""

import json
import os
import sys
from pathlib import Path

import pytest

STAND_INS = Path(__file__).parent / "stand_ins"
TOKEN = "KGAT_0123456789abcdef0123456789abcdef"
KEY = "0123456789abcdef0123456789abcdef"


class FakeKaggle:
    """The fake Kaggle's state: accepted tokens and keys, competitions, network."""

    def __init__(self, folder, monkeypatch):
        self.file = folder / "fake-kaggle.json"
        self.home = folder / "home"
        self.monkeypatch = monkeypatch
        self.state = {"tokens": [TOKEN], "keys": {"someone": KEY}, "competitions": {}, "offline": False}
        self.save()

    def save(self):
        self.file.write_text(json.dumps(self.state))

    def competition(self, name, archive=None, rules_accepted=True):
        self.state["competitions"][name] = {"archive": str(archive), "rules_accepted": rules_accepted}
        self.save()

    def set(self, **state):
        self.state.update(state)
        self.save()

    def token_in_env(self, token=TOKEN):
        self.monkeypatch.setenv("KAGGLE_API_TOKEN", token)

    def token_file(self, token=TOKEN, name="access_token"):
        (self.home / ".kaggle").mkdir(parents=True, exist_ok=True)
        (self.home / ".kaggle" / name).write_text(token + "\n")

    def legacy_json(self, key=KEY):
        (self.home / ".kaggle").mkdir(parents=True, exist_ok=True)
        path = self.home / ".kaggle" / "kaggle.json"
        path.write_text(json.dumps({"username": "someone", "key": key}))
        path.chmod(0o600)

    def legacy_env(self, key=KEY):
        self.monkeypatch.setenv("KAGGLE_USERNAME", "someone")
        self.monkeypatch.setenv("KAGGLE_KEY", key)

    def env(self):
        """Environment for a subprocess that must import the stand-in too (and this kpbench)."""
        import kpbench

        paths = [str(STAND_INS), str(Path(kpbench.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}


def _client_modules():
    return [name for name in sys.modules if name.split(".")[0] in ("kaggle", "kagglesdk")]


@pytest.fixture
def fake_kaggle(monkeypatch, tmp_path):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    fake = FakeKaggle(tmp_path, monkeypatch)
    fake.home.mkdir()
    monkeypatch.setenv("HOME", str(fake.home))
    monkeypatch.setenv("KPBENCH_FAKE_KAGGLE", str(fake.file))
    installed = {name: sys.modules.pop(name) for name in _client_modules()}
    monkeypatch.syspath_prepend(str(STAND_INS))
    yield fake
    for name in _client_modules():
        del sys.modules[name]
    sys.modules.update(installed)
