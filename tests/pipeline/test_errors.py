"""What a user sees on the terminal when the workflow refuses or a step fails (not only in logs/)."""

import pytest
import yaml

from workflow import checkout, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture
def user_tree(tmp_path):
    return checkout(tmp_path)


def test_a_run_target_of_no_instance_names_the_instances_there_are(user_tree):
    result = snakemake(user_tree, "-n", "--cores", "1", "results/runs/local-2x/r1/run.json", check=False)
    assert result.returncode != 0
    assert "no instance named 'local-2x' trains here; those that do: local, local-2w" in result.stdout + result.stderr
    planned = snakemake(user_tree, "-n", "--cores", "1", "results/runs/local-2w/r1/run.json").stdout
    assert "rule train:" in planned and "unknown_instance" not in planned


def test_a_failed_fetch_puts_its_reason_on_the_terminal(user_tree, tmp_path):
    """Kaggle data without credentials: the one-line reason is on stderr, not only in the log."""
    overlay = tmp_path / "kaggle.yaml"
    overlay.write_text(yaml.safe_dump({"data": {"source": "kaggle"}}))
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "KAGGLE_CONFIG_DIR": str(home), "KAGGLE_USERNAME": "", "KAGGLE_KEY": "",
           "KAGGLE_API_TOKEN": ""}
    result = snakemake(user_tree, "--cores", "1", "data/raw/training.csv", "--configfile", str(overlay),
                       check=False, env=env)
    assert result.returncode != 0
    log = (user_tree / "logs" / "fetch_data.log").read_text().strip().splitlines()[-1]
    assert log.startswith("kpbench fetch: error:")
    assert log in result.stderr
    assert not (user_tree / "data" / "raw" / "training.csv").exists()

