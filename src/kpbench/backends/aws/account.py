"""The account's long-lived resources and their removal: `kpbench aws-setup` (bucket, instance role
and profile, made once before any run) and `kpbench cleanup` (what runs and set-up left behind)."""

import datetime as dt
import json
import time

from kpbench.backends.aws import bucket_keys
from kpbench.backends.aws.api import client, session, translated
from kpbench.backends.aws.bucket import bucket_exists, delete_prefix, ensure_bucket
from kpbench.backends.aws.provision import (
    LIVE_STATES,
    PROJECT,
    TAG_EXPIRES,
    TAG_PROJECT,
    TAG_RUN,
    delete_security_group,
    resolve_ami,
    tag,
    terminate,
)


def instance_role_policy(bucket, prefix):
    """What an instance may do: read its own folder's inputs and write its own folder's outputs,
    nothing else (config/iam/instance-role-policy.json, with placeholders, is this document).

    A folder is named by its instance's ARN (kpbench.backends.aws.bucket_keys). Every request signed with an instance
    profile's credentials carries that ARN as ec2:SourceInstanceARN
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-ec2-sourceinstancearn),
    and a single-valued key may be used as a policy variable in Resource
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html), so one
    role confines each instance to its own folder: no run can touch another run's bundle, spec or
    results. The `*` before the ARN stands for the run id; it also lets an instance write a folder
    named by its own ARN under another run, which nothing reads. No s3:ListBucket: a missing key
    answers 403 (kpbench.backends.aws.bucket.MISSING), which the instance's waits treat as missing.
    """
    folder = f"arn:aws:s3:::{bucket}/{prefix}/*/${{ec2:SourceInstanceARN}}"
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadOwnInputs", "Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{folder}/input/*"},
        {"Sid": "WriteOwnOutputs", "Effect": "Allow", "Action": "s3:PutObject",
         "Resource": [f"{folder}/{name}" for name in bucket_keys.OUTPUTS]}]}


def ensure_instance_profile(iam, name, bucket, prefix):
    """An instance profile whose role reaches only its instance's folder: no keys in user data.
    Idempotent, and safe when two setups race (EntityAlreadyExists is success)."""
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    try:
        iam.get_role(RoleName=name)
    except iam.exceptions.NoSuchEntityException:
        try:
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                            Description="kpbench training instances: S3 access to the run prefix",
                            Tags=[{"Key": TAG_PROJECT, "Value": PROJECT}])
        except iam.exceptions.EntityAlreadyExistsException:
            pass
    iam.put_role_policy(RoleName=name, PolicyName="kpbench-s3",
                        PolicyDocument=json.dumps(instance_role_policy(bucket, prefix)))
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    except iam.exceptions.NoSuchEntityException:
        try:
            profile = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        except iam.exceptions.EntityAlreadyExistsException:
            profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    if not any(role["RoleName"] == name for role in profile.get("Roles", [])):
        try:
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        except iam.exceptions.LimitExceededException:  # a racing setup added it first (one role per profile)
            pass
    return profile["Arn"]


def wait_profile_usable(ec2, profile_name, image_id, instance_type="t3.micro", timeout_s=300, poll_s=5.0):
    """Wait until RunInstances accepts the instance profile. IAM changes reach EC2 with a delay
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency);
    a dry run answers DryRunOperation once the launch would be allowed, and "Invalid IAM Instance
    Profile" (InvalidParameterValue) before."""
    from botocore.exceptions import ClientError

    deadline = time.time() + timeout_s
    while True:
        try:
            ec2.run_instances(ImageId=image_id, InstanceType=instance_type, MinCount=1, MaxCount=1, DryRun=True,
                              IamInstanceProfile={"Name": profile_name})
            return  # a backend without dry runs: nothing more to learn
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "DryRunOperation":
                return
            if code not in ("InvalidParameterValue", "RequestLimitExceeded") or time.time() > deadline:
                raise
        time.sleep(poll_s)


def setup(aws_config):
    """The account's long-lived resources, made once before any run (`kpbench aws-setup`): the
    exchange bucket, the instance role and profile; returns once EC2 accepts the profile. Runs
    then need no IAM or bucket-creation permission, and parallel runs never race to create them."""
    boto = session(aws_config)
    with translated(region=aws_config.get("region")):
        ec2, s3, ssm, iam = (client(boto, name) for name in ("ec2", "s3", "ssm", "iam"))
        bucket, name = aws_config["bucket"], aws_config["instance_profile"]
        ensure_bucket(s3, bucket, aws_config.get("region"))
        arn = ensure_instance_profile(iam, name, bucket, aws_config["prefix"])
        wait_profile_usable(ec2, name, resolve_ami(aws_config, ec2, ssm))
    return {"bucket": bucket, "region": aws_config.get("region"), "instance_profile": name,
            "instance_profile_arn": arn, "prefix": aws_config["prefix"]}



ORPHAN_AGE_S = 3600  # a run this old with no live instance is over (younger ones may be launching now)


def run_started(run_id):
    """When a run began, from its id (`<instance>-YYYYmmddTHHMMSSZ-<hex>`), or None."""
    import re

    found = re.search(r"-(\d{8}T\d{6}Z)-[0-9a-f]+$", run_id or "")
    if not found:
        return None
    return dt.datetime.strptime(found.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)


def cleanup(aws_config, run_id=None, expired_only=False, now=None, everything=False, regions=(), all_regions=False):
    """Terminate instances carrying the project's tag (all, one run's, or those past their expiry),
    delete their runs' security groups and S3 prefixes, and those of any run over an hour old that
    has no live instance left (a launcher killed before its teardown). It looks in aws.region and in
    `regions`, or in every region enabled for the account (`all_regions`): a run's instances and
    group live in the region it was launched from, whatever aws.region says today. `everything`
    also removes what `aws-setup` made: the instance profile, its role and (once empty) the bucket."""
    now = now or dt.datetime.now(dt.timezone.utc)
    boto = session(aws_config)
    home = aws_config.get("region") or boto.region_name
    with translated(region=home):
        if all_regions:  # those enabled for the account: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeRegions.html
            regions = [r["RegionName"] for r in client(boto, "ec2").describe_regions()["Regions"]]
        regions = sorted({home, *regions})
        ec2s = {region: client(boto, "ec2", region) for region in regions}
        report = {"terminated": [], "security_groups": [], "regions": regions}
        report["spot_requests"] = sorted(r for ec2 in ec2s.values() for r in _cancel_spot_requests(ec2, run_id))
        ended = [_end_instances(ec2, run_id, expired_only, now) for ec2 in ec2s.values()]
        runs = {r for chosen, _ in ended for r in chosen} | ({run_id} if run_id else set())
        live = {r for _, left in ended for r in left}
        report["terminated"] = sorted(i for chosen, _ in ended for ids in chosen.values() for i in ids)

        def orphan(run, min_age_s=ORPHAN_AGE_S):
            started = run_started(run)
            return (run not in live and not run_id and started is not None
                    and (now - started).total_seconds() > min_age_s)

        for ec2 in ec2s.values():
            deleted, doomed = _remove_groups(ec2, runs, orphan)
            report["security_groups"] += deleted
            runs |= doomed
        # A prefix outlives its instances' lifetime before it counts as orphaned: its run may live in
        # a region this cleanup did not look in.
        age_s = max(ORPHAN_AGE_S, 3600 * float(aws_config.get("max_lifetime_h") or 0))
        report["s3_objects_removed"], runs = _remove_prefixes(client(boto, "s3"), aws_config, runs,
                                                              lambda run: orphan(run, age_s))
        report["runs"] = sorted(r for r in runs if r)
        if everything:
            report["removed_setup"] = remove_setup(aws_config, boto, client(boto, "s3"))
    return report


def _cancel_spot_requests(ec2, run_id):
    """In one region: cancel the project's spot requests still open or active (a one-time request
    closes with its instance, but one whose launch the launcher never saw may stay open); their ids.
    A request's instance outlives its cancellation (CancelSpotInstanceRequests does not terminate it):
    the instances' own tags bring them to _end_instances."""
    filters = [{"Name": f"tag:{TAG_PROJECT}", "Values": [PROJECT]}, {"Name": "state", "Values": ["open", "active"]}]
    if run_id:
        filters.append({"Name": f"tag:{TAG_RUN}", "Values": [run_id]})
    ids = [r["SpotInstanceRequestId"] for r in ec2.describe_spot_instance_requests(Filters=filters)["SpotInstanceRequests"]]
    if ids:
        ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=ids)
    return ids


def _end_instances(ec2, run_id, expired_only, now):
    """In one region: ({run: ids} terminated, runs that keep live instances)."""
    filters = [{"Name": f"tag:{TAG_PROJECT}", "Values": [PROJECT]},
               {"Name": "instance-state-name", "Values": LIVE_STATES}]
    if run_id:
        filters.append({"Name": f"tag:{TAG_RUN}", "Values": [run_id]})
    found = [i for page in ec2.get_paginator("describe_instances").paginate(Filters=filters)
             for r in page["Reservations"] for i in r["Instances"]]
    chosen = [i for i in found if not expired_only or _expired(i, now)]
    terminate(ec2, [i["InstanceId"] for i in chosen])
    runs = {}
    for instance in chosen:
        runs.setdefault(tag(instance, TAG_RUN), []).append(instance["InstanceId"])
    return runs, {tag(i, TAG_RUN) for i in found if i not in chosen}


def _remove_groups(ec2, runs, orphan):
    """In one region: delete the groups of `runs` and of orphaned runs; (deleted ids, their runs)."""
    groups = [g for page in ec2.get_paginator("describe_security_groups").paginate(
        Filters=[{"Name": f"tag:{TAG_PROJECT}", "Values": [PROJECT]}]) for g in page["SecurityGroups"]]
    doomed = [g for g in groups if tag(g, TAG_RUN) in runs or orphan(tag(g, TAG_RUN))]
    return [g["GroupId"] for g in doomed if delete_security_group(ec2, g["GroupId"])], {tag(g, TAG_RUN) for g in doomed}


def _remove_prefixes(s3, aws_config, runs, orphan):
    """Delete the S3 prefixes of `runs` and of orphaned runs; (how many objects went, all those runs)."""
    bucket, prefix = aws_config.get("bucket"), aws_config["prefix"]
    if not bucket or not bucket_exists(s3, bucket):
        return 0, runs
    stored = {p["Prefix"][len(prefix) + 1:].rstrip("/")
              for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/", Delimiter="/")
              for p in page.get("CommonPrefixes", [])}
    runs = runs | {run for run in stored if orphan(run)}
    return sum(delete_prefix(s3, bucket, f"{prefix}/{run}") for run in sorted(r for r in runs if r)), runs


def remove_setup(aws_config, boto, s3):
    """Undo `aws-setup` (only on request: `cleanup --all`): the instance profile, its role, and the
    bucket when nothing but kpbench's prefix was in it."""
    iam, name, removed = client(boto, "iam"), aws_config["instance_profile"], []
    try:
        profile = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        for role in profile.get("Roles", []):
            iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=role["RoleName"])
        iam.delete_instance_profile(InstanceProfileName=name)
        removed.append(f"instance profile {name}")
    except iam.exceptions.NoSuchEntityException:
        pass
    try:
        for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=policy)
        iam.delete_role(RoleName=name)
        removed.append(f"role {name}")
    except iam.exceptions.NoSuchEntityException:
        pass
    bucket = aws_config.get("bucket")
    if bucket and bucket_exists(s3, bucket):
        delete_prefix(s3, bucket, aws_config["prefix"])
        if s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount", 0) == 0:
            s3.delete_bucket(Bucket=bucket)
            removed.append(f"bucket {bucket}")
        else:
            removed.append(f"bucket {bucket} kept: it holds objects kpbench did not make")
    return removed


def _expired(instance, now):
    stamp = tag(instance, TAG_EXPIRES)
    if not stamp:
        return True  # a kpbench instance without an expiry is not one we launched safely: end it
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc) <= now
