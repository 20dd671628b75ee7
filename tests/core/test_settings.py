"""One settings path: the schema's defaults are the only defaults, and mistakes are named plainly."""

import argparse
import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kpbench import KpbenchError
from kpbench.cli.main import build_parser
from kpbench.core.settings import launch_settings, load_config, run_spec
from workflow import REPO

SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())


def _defaults(node, path=()):
    """(path, default) for every property of the schema that has a default."""
    for key, child in (node.get("properties") or {}).items():
        if "default" in child:
            yield (*path, key), child["default"]
        yield from _defaults(child, (*path, key))
    for key in ("additionalProperties", "items"):
        if isinstance(node.get(key), dict):
            yield from _defaults(node[key], (*path, "*"))


def _minimal(tmp_path):
    """Only what the schema requires: everything else must come from its defaults."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    minimal = {key: config[key] for key in SCHEMA["required"]}
    minimal.update(data={"source": "synthetic"}, preprocess={}, training={},
                   workloads={"default": {"epochs": 1, "batch_size": 8}})
    minimal["instances"] = [{key: row[key] for key in ("name", "backend", "usd_per_hour", "price_date")}
                            for row in config["instances"]]
    path = tmp_path / "minimal.yaml"
    path.write_text(yaml.safe_dump(minimal))
    return path


def _lookup(config, path):
    values = [config]
    for key in path:
        values = [v for value in values for v in (value.values() if isinstance(value, dict) else value)] \
            if key == "*" else [value[key] for value in values if key in value]
    return values


def test_loading_fills_every_schema_default(tmp_path):
    config = load_config([_minimal(tmp_path)])
    for path, default in _defaults(SCHEMA):
        found = _lookup(config, path)
        assert found, f"{'.'.join(path)}: the loaded configuration lacks it"
        if default != {}:  # an object's own defaults are checked one by one
            assert all(value == default for value in found), ".".join(path)


def test_the_measurement_spec_and_the_launch_settings_are_apart(tmp_path):
    config = load_config([_minimal(tmp_path)])
    spec = run_spec(config, "local", 2)
    assert sorted(spec) == ["data", "instance", "repeat", "training", "workload"]
    assert spec["training"]["seed"] == config["training"]["seed"] + 1
    assert spec["training"]["warmup_epochs"] == 2 and spec["data"]["seed"] == 42  # the schema's
    assert sorted(launch_settings(config)) == ["aws", "limits"]


def _schema_defaults_by_key():
    found = {}
    for path, default in _defaults(SCHEMA):
        found.setdefault(path[-1], []).append(default)
    return found


def test_no_code_default_differs_from_the_schema():
    """`x.get("warmup_epochs", 0)` where the schema says 2 is how two defaults disagreed: every
    `.get(<schema key>, <literal>)` in the package must repeat the schema's value, if it has one."""
    defaults, wrong = _schema_defaults_by_key(), []
    for path in sorted((REPO / "src" / "kpbench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
                    and node.args[0].value in defaults):
                try:
                    value = ast.literal_eval(node.args[1])
                except ValueError:
                    continue  # a name, not a literal
                if value not in defaults[node.args[0].value]:
                    wrong.append(f"{path.name}:{node.lineno} {node.args[0].value}={value!r}")
    assert not wrong, wrong


def test_the_commands_have_no_setting_defaults_of_their_own():
    """Command-line defaults may name files and folders only; every setting comes validated."""
    parser, wrong = build_parser(), []
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in commands.choices.items():
        for action in command._actions:
            default = action.default
            if default in (None, False, argparse.SUPPRESS) or isinstance(action, argparse._HelpAction):
                continue
            paths = default if isinstance(default, list) else [default]
            if not all(isinstance(p, Path) for p in paths):
                wrong.append(f"{name} {action.dest}={default!r}")
    assert not wrong, wrong


def test_a_misspelled_workload_is_named(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("workload: defualt\n")
    with pytest.raises(KpbenchError, match="workload 'defualt' is not one of tiny, default, full"):
        load_config([REPO / "config" / "config.yaml", overlay])
    result = subprocess.run([sys.executable, "-m", "kpbench", "plan", "--configfile", "config/config.yaml",
                             str(overlay), "--no-quota-check"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "workload 'defualt' is not one of" in result.stderr


def test_a_schema_violation_names_the_field(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("training:\n  warmup_epochs: -1\n")
    with pytest.raises(KpbenchError, match="warmup_epochs"):
        load_config([REPO / "config" / "config.yaml", overlay])


def test_the_retired_boot_allowance_is_refused_with_what_replaced_it(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("aws:\n  boot_overhead_s: 900\n")
    with pytest.raises(KpbenchError, match="aws.boot_overhead_s is no longer a setting.*kpbench.forecast.rental"):
        load_config([REPO / "config" / "config.yaml", overlay])


def test_duplicate_instance_names_are_named(tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"instances": config["instances"] + config["instances"][:1]}))
    with pytest.raises(KpbenchError, match="instance names must be unique \\(local repeated\\)"):
        load_config([REPO / "config" / "config.yaml", overlay])


def test_an_unknown_model_is_named(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("workloads:\n  tiny:\n    model: resnet\n")
    with pytest.raises(KpbenchError, match="workloads.tiny.model 'resnet' is not one of reference_cnn, separable_cnn"):
        load_config([REPO / "config" / "config.yaml", overlay])


def test_the_backend_names_are_the_registry_s(tmp_path):
    """The schema says only that a backend is a string: the names a row may use are those the
    launchers registered, and a name no launcher registered is refused with the valid ones."""
    from kpbench.backends import registry

    backend = SCHEMA["properties"]["instances"]["items"]["properties"]["backend"]
    assert "enum" not in backend
    kinds = registry.kinds()
    assert set(kinds) == {"local", "local-cluster", "ec2", "ec2-cluster"}
    assert {name for name, kind in kinds.items() if kind.rented} == {"ec2", "ec2-cluster"}
    assert registry.single_worker("ec2-cluster") == "ec2" and registry.single_worker("local-cluster") == "local"
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("instances:\n  - {name: x, backend: gce, usd_per_hour: 1, price_date: 2026-01-01}\n")
    with pytest.raises(KpbenchError, match=r"instances\.0\.backend: 'gce' is not one of \['ec2', 'ec2-cluster', 'local',"):
        load_config([REPO / "config" / "config.yaml", overlay])


def test_a_launcher_registers_itself_and_a_name_twice_is_refused():
    from kpbench.backends import registry

    @registry.register("test-only", cluster=False)
    class Launcher:
        provider = "somecloud"

    try:
        kind = registry.kind("test-only")
        assert kind.launcher is Launcher and kind.rented and kind.machines({"workers": 3}) == 1
        with pytest.raises(KpbenchError, match="registered twice"):
            registry.register("test-only", cluster=True)(type("Other", (), {"provider": None}))
    finally:
        registry._KINDS.pop("test-only")
    with pytest.raises(KpbenchError, match="unknown backend 'test-only': one of ec2, ec2-cluster, local"):
        registry.kind("test-only")


def test_measured_as_must_name_a_measured_row_of_the_original_study(tmp_path):
    """The plan budgets an EC2 row at the throughput of the original study's row it names: a name
    that is not a measured row there (a typo, an abandoned row) is refused by name."""
    config = load_config([REPO / "config" / "config.yaml", REPO / "config" / "aws.yaml"], launching=False)
    assert {row["measured_as"] for row in config["instances"] if row.get("measured_as")} == {
        "c5.4xlarge", "g4dn.xlarge", "2x g4dn.xlarge", "4x g4dn.xlarge"}
    for wrong in ("2x-g4dn.xlarge", "p3.2xlarge"):  # a typo; a row the study abandoned
        overlay = tmp_path / "overlay.yaml"
        rows = [{**config["instances"][0], "name": "ec2-row", "backend": "ec2", "instance_type": "g4dn.xlarge",
                 "measured_as": wrong}]
        overlay.write_text(yaml.safe_dump({"instances": rows}))
        with pytest.raises(KpbenchError, match=f"instance ec2-row: measured_as '{wrong}' is not a measured row"):
            load_config([REPO / "config" / "config.yaml", overlay], launching=False)


def test_measured_as_with_an_unreadable_study_table_is_named(tmp_path):
    config = load_config([REPO / "config" / "config.yaml", REPO / "config" / "aws.yaml"], launching=False)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"original_study": {"csv": str(tmp_path / "missing.csv")},
                                       "instances": [r for r in config["instances"] if r.get("measured_as")]}))
    with pytest.raises(KpbenchError, match="original_study.csv .*missing.csv cannot be read"):
        load_config([REPO / "config" / "config.yaml", REPO / "config" / "aws.yaml", overlay], launching=False)


def test_an_ec2_row_takes_its_machine_facts_from_the_catalogue_only(tmp_path):
    """config/aws.yaml names types; vCPUs, GPUs, network and price are config/catalogue.csv's, the one
    copy: filled in on validation, and a row that restates one differently is refused by name."""
    from kpbench.core.catalogue import MACHINE_FACTS, read_catalogue

    rows = yaml.safe_load((REPO / "config" / "aws.yaml").read_text())["instances"]
    assert rows and not {key for row in rows for key in row} & set(MACHINE_FACTS)
    config = load_config([REPO / "config" / "config.yaml", REPO / "config" / "aws.yaml"], launching=False)
    catalogue = {r["instance_type"]: r for r in read_catalogue()}
    ec2 = [row for row in config["instances"] if row["backend"].startswith("ec2")]
    assert len(ec2) == len(rows)
    for row in ec2:
        entry = catalogue[row["instance_type"]]
        assert (row["usd_per_hour"], row["vcpus"], row["network_gbps"], row["price_date"], row["ec2_catalogue"]) == (
            entry["usd_per_hour"], entry["vcpus"], entry["network_gbps"], entry["price_date"], entry["status"])
        assert (row["gpus"], row["gpu_model"]) == ((0, None) if row.get("peak_device") else (entry["devices"], entry["device"]))
    assert next(row for row in ec2 if row["name"] == "c5.4xlarge")["peak_device"] == "c5.4xlarge CPU"
    assert next(row for row in ec2 if row["name"] == "g4dn.xlarge")["gpu_model"] == "Tesla T4"

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("instances:\n  - {name: t4, backend: ec2, instance_type: g4dn.xlarge, usd_per_hour: 0.71}\n")
    with pytest.raises(KpbenchError, match=r"instance t4: usd_per_hour 0.71 differs from \S*config/catalogue.csv's 0.526"):
        load_config([REPO / "config" / "config.yaml", overlay], launching=False)
    overlay.write_text("instances:\n  - {name: x, backend: ec2, instance_type: z9.huge}\n")
    with pytest.raises(KpbenchError, match=r"instance x: instance_type z9.huge is not in \S*config/catalogue.csv"):
        load_config([REPO / "config" / "config.yaml", overlay], launching=False)
    overlay.write_text("instances:\n  - {name: mine, backend: local}\n")
    with pytest.raises(KpbenchError, match="instance mine needs usd_per_hour and price_date"):
        load_config([REPO / "config" / "config.yaml", overlay], launching=False)


@pytest.mark.parametrize("wrong", ["g4dn.xlarg", "c5.4xlarge", "4x g4dn.xlarge"])  # a typo; no GPU; a cluster
def test_a_scaling_reference_that_is_no_measured_single_gpu_row_is_refused(wrong):
    """The paper's scaling predictions start from this row: a name the study's table lacks was once
    accepted and silently dropped the predictions; now the workflow refuses to start, with the names."""
    command = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "results",
               "--config", f'analysis={{"scaling_reference": "{wrong}"}}']
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert (f"analysis.scaling_reference '{wrong}' is not a measured single-GPU row of config/original_study.csv "
            "(g3s.xlarge, g3.4xlarge, g4dn.xlarge)") in result.stdout + result.stderr


def test_a_campaign_that_does_not_exist_is_refused():
    """Once it said 'Nothing to be done' and left the previous paper in place."""
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "paper",
                             "--config", "campaign=campaigns/nope"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0
    assert "campaign campaigns/nope: no stored campaign there" in result.stdout + result.stderr


def test_a_peak_device_the_peak_table_lacks_is_refused(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"instances": [{"name": "local", "backend": "local", "gpus": 0,
                                                      "usd_per_hour": None, "price_date": None,
                                                      "peak_device": "AMD EPYC Zen 9 vCPU"}]}))
    with pytest.raises(KpbenchError, match="instance local: peak_device 'AMD EPYC Zen 9 vCPU' is not a device of the "
                                           "peak table .*AMD EPYC Zen 4 vCPU"):
        load_config([REPO / "config" / "config.yaml", overlay], launching=False)
