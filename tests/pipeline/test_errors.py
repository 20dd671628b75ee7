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
    probe = snakemake(user_tree, "-n", "--cores", "1", "results/probes/locl/probe.json", check=False)
    assert probe.returncode != 0
    assert "no instance named 'locl' trains here; those that do: local, local-2w" in probe.stdout + probe.stderr
    planned = snakemake(user_tree, "-n", "--cores", "1", "results/probes/local/probe.json").stdout
    assert "rule probe_extrapolate:" in planned and "unknown_probe" not in planned


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



def test_a_malformed_study_log_puts_its_reason_on_the_terminal(user_tree):
    """The original study's logs parsed again with one of them broken: the parser's reason, naming the
    file, reaches stderr as well as the log."""
    import gzip

    broken = user_tree / "config" / "original_study_logs" / "g4dn.xlarge.log.gz"
    broken.write_bytes(gzip.compress(b"Epoch 1/100\nnot a Keras line\n"))
    # The target before --forcerun: that option takes every word after it, and a target it swallowed would
    # leave Snakemake building the whole paper, the failing job only somewhere in it.
    result = snakemake(user_tree, "--cores", "1", "config/original_study_runs.json", "--forcerun", "original_logs",
                       check=False)
    assert result.returncode != 0
    log = (user_tree / "logs" / "original_logs.log").read_text().strip().splitlines()[-1]
    assert log.startswith("kpbench original-logs: error:") and "g4dn.xlarge.log.gz" in log
    assert log in result.stderr


@pytest.mark.parametrize("quota_check, planned", [(False, True), (True, False)])
def test_the_plan_rule_plans_offline_when_told_to(user_tree, tmp_path, quota_check, planned):
    """The README's overlay plans the EC2 matrix with no credentials (the command's --no-quota-check was
    unreachable from Snakemake); with the check on, the missing credentials stop the plan, saying so."""
    overlay = tmp_path / "my-aws.yaml"
    overlay.write_text(yaml.safe_dump({"aws": {"bucket": "my-bucket", "quota_check": quota_check}}))
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "AWS_CONFIG_FILE": str(home / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
           "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_EC2_METADATA_DISABLED": "true"}
    result = snakemake(user_tree, "--cores", "1", "plan", "--configfile", "config/aws.yaml", str(overlay),
                       check=False, env=env)
    assert (result.returncode == 0) == planned, result.stderr[-2000:]
    assert (user_tree / "results" / "plan.json").exists() == planned
    if planned:
        assert "4x-g4dn.xlarge" in result.stdout + result.stderr
