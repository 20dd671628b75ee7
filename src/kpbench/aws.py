"""AWS for the remote backends: EC2 instances, their S3 exchange, safety rails, plan and cleanup.

Credentials come from boto3's standard chain (environment, profile, SSO, instance role) and never
pass through kpbench: nothing here writes them anywhere. Every AWS refusal is translated into a
sentence that says what to do (`explain`).
"""

import contextlib
import datetime as dt
import hashlib
import io
import json
import tarfile
import time
from pathlib import Path

from kpbench import KpbenchError

PROJECT = "kpbench"
TAG_PROJECT, TAG_RUN, TAG_INSTANCE, TAG_EXPIRES = "project", "kpbench:run-id", "kpbench:instance", "kpbench:expires-at"
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
SSE = {"ServerSideEncryption": "AES256"}

# Service Quotas codes of the on-demand vCPU quotas, by instance family's first letter.
VCPU_QUOTAS = {
    "p": ("Running On-Demand P instances", "L-417A185B"),
    "g": ("Running On-Demand G and VT instances", "L-DB2E81BA"),
    "v": ("Running On-Demand G and VT instances", "L-DB2E81BA"),
}
STANDARD_QUOTA = ("Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", "L-1216C47A")
# Launch refusals worth one more try with the same ClientToken (an instance profile created a
# moment ago is not yet visible to EC2; API throttling).
RETRYABLE = {"RequestLimitExceeded", "InvalidParameterValue", "IncorrectState"}


# Spot vCPU quotas (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-on-demand-instances.html#ec2-on-demand-instances-limits
# and the spot counterpart in https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-spot-limits.html).
SPOT_VCPU_QUOTAS = {
    "p": ("All P Spot Instance Requests", "L-7212CCBC"),
    "g": ("All G and VT Spot Instance Requests", "L-3819A6DF"),
    "v": ("All G and VT Spot Instance Requests", "L-3819A6DF"),
}
SPOT_STANDARD_QUOTA = ("All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests", "L-34B43A08")


def vcpus_needed(instances, repeats=1):
    """{(quota name, code): vCPUs} that the campaign holds at once at most: with enough Snakemake
    cores every EC2 run of every repeat runs at the same time."""
    needed = {}
    for row in instances:
        if row.get("backend") not in ("ec2", "ec2-cluster") or row.get("ec2_catalogue") == "retired":
            continue
        family = row["instance_type"][:1].lower()
        quota = (SPOT_VCPU_QUOTAS.get(family, SPOT_STANDARD_QUOTA) if row.get("spot")
                 else vcpu_quota(row["instance_type"]))
        machines = int(row.get("workers", 1)) if row["backend"] == "ec2-cluster" else 1
        needed[quota] = needed.get(quota, 0) + int(row.get("vcpus") or 0) * machines * int(repeats)
    return needed


def quota_shortfalls(quotas, needed, region):
    """The vCPU quotas (Service Quotas, service ec2) below what the campaign needs at once, each as a
    sentence that says which quota to raise and how; empty when all suffice."""
    problems = []
    for (name, code), vcpus in sorted(needed.items()):
        try:
            value = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
        except quotas.exceptions.NoSuchResourceException:
            value = 0.0
        if value < vcpus:
            problems.append(
                f"'{name}' ({code}) in {region} is {value:.0f} vCPUs, the campaign needs {vcpus} at once: raise it "
                f"(Service Quotas console, Amazon EC2, or `aws service-quotas request-service-quota-increase "
                f"--service-code ec2 --quota-code {code} --desired-value {vcpus} --region {region}`), or run "
                "with fewer Snakemake cores")
    return problems


def vcpu_quota(instance_type):
    return VCPU_QUOTAS.get(instance_type[:1].lower(), STANDARD_QUOTA)


def explain(error, instance_type=None, region=None):
    """A KpbenchError in plain language for an AWS refusal (ClientError or a missing credential)."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError, ProfileNotFound

    if isinstance(error, (NoCredentialsError, ProfileNotFound)):
        return KpbenchError(
            "no AWS credentials found: set AWS_PROFILE (or aws.profile in the config) to a configured "
            "profile, run `aws sso login`, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. "
            f"({type(error).__name__})")
    if isinstance(error, NoRegionError):
        return KpbenchError("no AWS region: set aws.region in the config or AWS_DEFAULT_REGION")
    if not isinstance(error, ClientError):
        return KpbenchError(f"AWS: {error}")
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    what = instance_type or "this instance type"
    where = region or "this region"
    if code == "VcpuLimitExceeded":
        name, quota = vcpu_quota(what)
        return KpbenchError(
            f"EC2 refused {what}: your account's vCPU quota '{name}' ({quota}) in {where} is too low for it "
            f"(new accounts often have 0 for P and G instances — the original study's P-instance refusal). "
            f"Ask for more in the Service Quotas console (Amazon EC2, '{name}', Request increase), or "
            f"`aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {quota} "
            f"--desired-value <vCPUs> --region {where}`. AWS said: {message}")
    if code == "InstanceLimitExceeded":
        return KpbenchError(
            f"EC2 refused {what}: the account's instance limit for this type in {where} is reached. "
            f"Terminate unused instances (`python -m kpbench cleanup`) or ask for a higher limit in the "
            f"Service Quotas console (Amazon EC2). AWS said: {message}")
    if code == "InsufficientInstanceCapacity":
        return KpbenchError(
            f"AWS has no spare {what} capacity in {where} right now: try again later, another "
            f"availability zone (aws.subnet_id) or another region (aws.region). AWS said: {message}")
    if code == "Unsupported":
        return KpbenchError(
            f"{what} is not offered in {where} (or its chosen availability zone): pick a region or "
            f"subnet that offers it (`aws ec2 describe-instance-type-offerings`). AWS said: {message}")
    if code.startswith("InvalidAMIID"):
        return KpbenchError(f"unknown AMI: {message}. Check aws.ami in the config (an AMI id, an SSM "
                            "parameter, or a name pattern) for this region.")
    if code in ("AuthFailure", "UnauthorizedOperation", "AccessDenied", "AccessDeniedException",
                "InvalidClientTokenId", "ExpiredToken", "SignatureDoesNotMatch"):
        return KpbenchError(f"AWS refused the credentials or their permissions ({code}): refresh them "
                            f"(`aws sso login`) or grant the missing permission. AWS said: {message}")
    return KpbenchError(f"AWS error {code}: {message}")


@contextlib.contextmanager
def translated(instance_type=None, region=None):
    """Turn AWS refusals raised inside the block into plain-language KpbenchErrors."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (ClientError, BotoCoreError) as error:
        raise explain(error, instance_type, region) from error


def session(aws_config):
    import boto3

    with translated(region=aws_config.get("region")):
        return boto3.Session(profile_name=aws_config.get("profile"), region_name=aws_config.get("region"))


def resolve_ami(aws_config, ec2, ssm):
    """The AMI to boot: an id as given, the value of an SSM parameter (the Deep Learning AMIs
    publish theirs), or the newest image whose name matches a pattern; checked to exist before
    anything is launched."""
    from botocore.exceptions import ClientError

    ami = aws_config["ami"]
    if ami.get("id"):
        image_id = ami["id"]
    elif ami.get("ssm_parameter"):
        try:
            image_id = ssm.get_parameter(Name=ami["ssm_parameter"])["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound:
            raise KpbenchError(f"unknown AMI: SSM parameter {ami['ssm_parameter']} does not exist in "
                               f"{aws_config.get('region')}; check aws.ami.ssm_parameter") from None
    else:
        return _newest_image(aws_config, ec2)
    try:
        found = ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as error:
        if not error.response.get("Error", {}).get("Code", "").startswith("InvalidAMIID"):
            raise
        found = []
    if not found:
        raise KpbenchError(f"unknown AMI: {image_id} does not exist in {aws_config.get('region')} "
                           f"(from aws.ami = {ami}); check the config")
    return image_id


def _newest_image(aws_config, ec2):
    ami = aws_config["ami"]
    images = ec2.describe_images(Owners=ami.get("owners", ["amazon"]),
                                 Filters=[{"Name": "name", "Values": [ami["name_pattern"]]},
                                          {"Name": "state", "Values": ["available"]}])["Images"]
    if not images:
        raise KpbenchError(f"unknown AMI: no image named like {ami['name_pattern']!r} owned by "
                           f"{', '.join(ami.get('owners', ['amazon']))} in {aws_config.get('region')}")
    return max(images, key=lambda image: image.get("CreationDate", ""))["ImageId"]


def ensure_bucket(s3, bucket, region):
    """The exchange bucket, private and encrypted by default; created when missing.

    Created with Object Ownership "bucket owner enforced": ACLs are disabled and every object
    belongs to the bucket's owner, which is the default for buckets created since April 2023
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/about-object-ownership.html). kpbench
    therefore never sends an ACL: such a bucket refuses any but bucket-owner-full-control, and an
    ACL on PutObject also needs s3:PutObjectAcl, which the instance role does not have
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html). Objects are private anyway.
    """
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except s3.exceptions.ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise
    extra = {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    try:
        s3.create_bucket(Bucket=bucket, ObjectOwnership="BucketOwnerEnforced", **extra)
    except s3.exceptions.BucketAlreadyOwnedByYou:  # another setup made it a moment ago (outside us-east-1)
        pass
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})


def put_private(s3, bucket, key, body):
    """A private (no ACL: see ensure_bucket), server-side encrypted object."""
    s3.put_object(Bucket=bucket, Key=key, Body=body, **SSE)


def code_bundle():
    """The kpbench package as a tar.gz (no caches), byte-stable for the same sources."""
    package = Path(__file__).resolve().parent
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(package.rglob("*")):
            if "__pycache__" in path.parts or path.is_dir():
                continue
            info = tar.gettarinfo(path, arcname=str(Path("kpbench") / path.relative_to(package)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


def group_vpc(ec2, vpc_id=None, subnet_id=None):
    """The VPC a run's security group must live in: the subnet's when one is set (a group of
    another VPC is refused at launch), else the given one, else the region's default VPC."""
    if subnet_id:
        return retrying(lambda: ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["VpcId"])
    if vpc_id:
        return vpc_id
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise KpbenchError("this region has no default VPC: set aws.subnet_id to a subnet (in a VPC whose "
                           "instances can reach S3 and the Python package index: a public subnet, or a "
                           "private one with a NAT gateway) — kpbench takes the VPC from the subnet")
    return vpcs[0]["VpcId"]


def create_security_group(ec2, name, run_id, vpc_id):
    """The run's group, tagged with its run (so `cleanup` finds it), with no inbound rule yet."""
    return ec2.create_security_group(
        GroupName=name, VpcId=vpc_id, Description="kpbench workers: worker port within the group only",
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [
            {"Key": TAG_PROJECT, "Value": PROJECT}, {"Key": TAG_RUN, "Value": run_id}]}])["GroupId"]


def authorize_peers(ec2, group_id, port):
    """Members may reach each other on the worker port, and nothing else inbound: no 0.0.0.0/0, no
    SSH. A group created a moment ago may not be visible yet (eventual consistency:
    https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html)."""
    retrying(lambda: ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": port, "ToPort": port,
        "UserIdGroupPairs": [{"GroupId": group_id, "Description": "kpbench peers"}]}]),
        codes=("InvalidGroup.NotFound",))


def ensure_security_group(ec2, name, port, run_id, vpc_id=None, subnet_id=None):
    """A group whose members may reach each other on the worker port, and nothing else inbound."""
    group_id = create_security_group(ec2, name, run_id, group_vpc(ec2, vpc_id, subnet_id))
    authorize_peers(ec2, group_id, port)
    return group_id


def instance_role_policy(bucket, prefix):
    """What an instance may do: read and write its own run's objects, nothing else."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"arn:aws:s3:::{bucket}/{prefix}/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": f"{prefix}/*"}}}]}


def ensure_instance_profile(iam, name, bucket, prefix):
    """An instance profile whose role reaches only kpbench's S3 prefix: no keys in user data.
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


# Answers EC2 gives for a resource created a moment ago, or under load: worth another try
# (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html).
EVENTUAL = ("InvalidInstanceID.NotFound", "InvalidGroup.NotFound", "RequestLimitExceeded")


def retrying(call, codes=EVENTUAL, attempts=8, pause_s=1.0, cap_s=20.0):
    """call() again, with exponential backoff, while AWS answers one of `codes`."""
    from botocore.exceptions import ClientError

    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code not in codes or attempt == attempts:
                raise
            time.sleep(min(cap_s, pause_s * 2 ** (attempt - 1)))


def client(boto, name):
    """A client whose own retries follow botocore's standard mode (throttling such as
    RequestLimitExceeded included: https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html)."""
    from botocore.config import Config

    made = boto.client(name, config=Config(retries={"mode": "standard", "max_attempts": 8}))
    if name == "s3":
        account = boto.client("sts").get_caller_identity()["Account"]
        pin_bucket_owner(made, account)
    return made


def pin_bucket_owner(s3, account_id):
    """Every S3 call that accepts it carries ExpectedBucketOwner: a bucket of the configured name that
    belongs to another account is refused instead of being written to or read from
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html)."""
    def add(params, model, **_):
        if "ExpectedBucketOwner" in model.input_shape.members and "ExpectedBucketOwner" not in params:
            params["ExpectedBucketOwner"] = account_id

    if account_id:
        s3.meta.events.register("provide-client-params.s3", add)
    return s3


def client_token(run_id):
    """Idempotency token of one launch: a retried call with it cannot start a second set."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:64]


def run_instances(ec2, params, attempts=4, pause_s=5.0):
    """run_instances with retries on transient refusals, always with the same ClientToken."""
    from botocore.exceptions import ClientError

    for attempt in range(1, attempts + 1):
        try:
            return ec2.run_instances(**params)["Instances"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code not in RETRYABLE or attempt == attempts:
                raise
            print(f"launch refused ({code}), retrying with the same ClientToken", flush=True)
            time.sleep(pause_s * attempt)


def expiry(hours, now=None):
    now = now or dt.datetime.now(dt.timezone.utc)
    return (now + dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def launch_params(*, instance_type, count, ami, user_data, group_id, profile_name, run_id, instance_name,
                  max_lifetime_h, subnet_id=None, spot=False, volume_gb=None, root_device="/dev/sda1"):
    """Every safety rail of a launch in one place: self-terminating, IMDSv2 only, tagged, idempotent."""
    tags = [{"Key": TAG_PROJECT, "Value": PROJECT}, {"Key": TAG_RUN, "Value": run_id},
            {"Key": TAG_INSTANCE, "Value": instance_name}, {"Key": TAG_EXPIRES, "Value": expiry(max_lifetime_h)},
            {"Key": "Name", "Value": f"kpbench {instance_name} {run_id}"}]
    params = {
        "ImageId": ami, "InstanceType": instance_type, "MinCount": count, "MaxCount": count,
        "UserData": user_data, "ClientToken": client_token(run_id),
        "IamInstanceProfile": {"Name": profile_name},
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}],
    }
    if subnet_id:
        params["NetworkInterfaces"] = [{"DeviceIndex": 0, "SubnetId": subnet_id, "Groups": [group_id],
                                        "AssociatePublicIpAddress": True}]
    else:
        params["SecurityGroupIds"] = [group_id]
    if spot:
        params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
    if volume_gb:
        params["BlockDeviceMappings"] = [{"DeviceName": root_device, "Ebs": {
            "VolumeSize": int(volume_gb), "VolumeType": "gp3", "DeleteOnTermination": True, "Encrypted": True}}]
    return params


def root_device(ec2, image_id):
    """The AMI's root device name (/dev/sda1 on Ubuntu, /dev/xvda on Amazon Linux): a mapping
    for another name adds a second volume instead of resizing the root one."""
    images = ec2.describe_images(ImageIds=[image_id])["Images"]
    return (images[0].get("RootDeviceName") if images else None) or "/dev/sda1"


def describe(ec2, instance_ids):
    """{instance id: instance description}; retried while EC2 does not know the ids yet."""
    reservations = retrying(lambda: ec2.describe_instances(InstanceIds=list(instance_ids)))["Reservations"]
    return {i["InstanceId"]: i for r in reservations for i in r["Instances"]}


def terminate(ec2, instance_ids, wait_s=300, poll_s=2.0):
    """Terminate and wait until EC2 says so (bounded), so a teardown is a fact, not a request.

    Not botocore's instance_terminated waiter: it gives up on an instance still "pending", and on
    ids EC2 does not know yet right after RunInstances. Returns when they were all terminated."""
    instance_ids = list(instance_ids)
    if not instance_ids:
        return time.time()
    retrying(lambda: ec2.terminate_instances(InstanceIds=instance_ids))
    deadline = time.time() + wait_s
    while True:
        states = {i: d["State"]["Name"] for i, d in describe(ec2, instance_ids).items()}
        if all(states.get(i) == "terminated" for i in instance_ids):
            return time.time()
        if time.time() > deadline:
            raise KpbenchError("instances not terminated within "
                               f"{wait_s:.0f} s: " + ", ".join(f"{i} {s}" for i, s in states.items()))
        if any(s == "pending" for s in states.values()):  # a pending instance can miss the first request
            retrying(lambda: ec2.terminate_instances(InstanceIds=instance_ids))
        time.sleep(poll_s)


def delete_prefix(s3, bucket, prefix):
    """Remove every object under `prefix/`; returns how many."""
    removed = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            removed += len(keys)
    return removed


def delete_security_group(ec2, group_id, wait_s=120):
    """Delete a run's group once no instance uses it any more (termination frees it with a delay)."""
    from botocore.exceptions import ClientError

    deadline = time.time() + wait_s
    while True:
        try:
            ec2.delete_security_group(GroupId=group_id)
            return True
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "InvalidGroup.NotFound":
                return True
            if code != "DependencyViolation" or time.time() > deadline:
                print(f"could not delete security group {group_id} ({code}); `kpbench cleanup` retries",
                      flush=True)
                return False
            time.sleep(5)


ORPHAN_AGE_S = 3600  # a run this old with no live instance is over (younger ones may be launching now)


def run_started(run_id):
    """When a run began, from its id (`<instance>-YYYYmmddTHHMMSSZ-<hex>`), or None."""
    import re

    found = re.search(r"-(\d{8}T\d{6}Z)-[0-9a-f]+$", run_id or "")
    if not found:
        return None
    return dt.datetime.strptime(found.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)


def cleanup(aws_config, run_id=None, expired_only=False, now=None, everything=False):
    """Terminate instances carrying the project's tag (all, one run's, or those past their expiry),
    delete their runs' security groups and S3 prefixes, and those of any run over an hour old that
    has no live instance left (a launcher killed before its teardown). `everything` also removes
    what `aws-setup` made: the instance profile, its role and (once empty) the bucket."""
    now = now or dt.datetime.now(dt.timezone.utc)
    boto = session(aws_config)
    with translated(region=aws_config.get("region")):
        ec2, s3 = client(boto, "ec2"), client(boto, "s3")
        filters = [{"Name": f"tag:{TAG_PROJECT}", "Values": [PROJECT]},
                   {"Name": "instance-state-name", "Values": LIVE_STATES}]
        if run_id:
            filters.append({"Name": f"tag:{TAG_RUN}", "Values": [run_id]})
        found = [i for page in ec2.get_paginator("describe_instances").paginate(Filters=filters)
                 for r in page["Reservations"] for i in r["Instances"]]
        chosen = [i for i in found if not expired_only or _expired(i, now)]
        runs = {_tag(i, TAG_RUN) for i in chosen} | ({run_id} if run_id else set())
        terminate(ec2, [i["InstanceId"] for i in chosen])
        live = {_tag(i, TAG_RUN) for i in found if i not in chosen}

        def orphan(run):
            started = run_started(run)
            return (run not in live and not run_id and started is not None
                    and (now - started).total_seconds() > ORPHAN_AGE_S)

        groups = [g for page in ec2.get_paginator("describe_security_groups").paginate(
            Filters=[{"Name": f"tag:{TAG_PROJECT}", "Values": [PROJECT]}]) for g in page["SecurityGroups"]]
        doomed = [g for g in groups if _tag(g, TAG_RUN) in runs or orphan(_tag(g, TAG_RUN))]
        runs |= {_tag(g, TAG_RUN) for g in doomed}
        deleted_groups = [g["GroupId"] for g in doomed if delete_security_group(ec2, g["GroupId"])]
        objects = 0
        if aws_config.get("bucket") and _bucket_exists(s3, aws_config["bucket"]):
            bucket, prefix = aws_config["bucket"], aws_config["prefix"]
            stored = {p["Prefix"][len(prefix) + 1:].rstrip("/")
                      for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/",
                                                                                Delimiter="/")
                      for p in page.get("CommonPrefixes", [])}
            runs |= {run for run in stored if orphan(run)}
            objects = sum(delete_prefix(s3, bucket, f"{prefix}/{run}") for run in sorted(r for r in runs if r))
        report = {"terminated": sorted(i["InstanceId"] for i in chosen), "runs": sorted(r for r in runs if r),
                  "security_groups": deleted_groups, "s3_objects_removed": objects}
        if everything:
            report["removed_setup"] = remove_setup(aws_config, boto, s3)
    return report


def _bucket_exists(s3, bucket):
    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except s3.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise


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
    if bucket and _bucket_exists(s3, bucket):
        delete_prefix(s3, bucket, aws_config["prefix"])
        if s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("KeyCount", 0) == 0:
            s3.delete_bucket(Bucket=bucket)
            removed.append(f"bucket {bucket}")
        else:
            removed.append(f"bucket {bucket} kept: it holds objects kpbench did not make")
    return removed


def _tag(resource, key):
    return next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == key), None)


def _expired(instance, now):
    stamp = _tag(instance, TAG_EXPIRES)
    if not stamp:
        return True  # a kpbench instance without an expiry is not one we launched safely: end it
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc) <= now
