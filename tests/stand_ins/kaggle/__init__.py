"""Stand-in for kaggle 2.2.5 (see tests/kaggle_stand_in.py). As kaggle/__init__.py does, importing
the package authenticates and swallows the failure, so without credentials it prints its login help.
In "1.7.4.5" mode it behaves as the 1.x client pip picks on Python 3.10: it raises at import."""

from kaggle.api.kaggle_api_extended import KaggleApi, server

__version__ = server().get("version", "2.2.5")

if __version__.startswith("1."):
    raise OSError("Could not find kaggle.json. Make sure it's located in ~/.kaggle.")
api = KaggleApi()
try:
    api.authenticate()
except (Exception, SystemExit):
    pass
