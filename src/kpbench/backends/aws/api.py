"""How kpbench talks to AWS: sessions and clients, retries, and refusals (vCPU quotas included) in
plain language.

Credentials come from boto3's standard chain (environment, profile, SSO, instance role) and never
pass through kpbench: nothing here writes them anywhere. Every AWS refusal is translated into a
sentence that says what to do (`explain`, worded in kpbench.backends.aws.refusals).
"""

import contextlib
import time

from kpbench import KpbenchError
from kpbench.backends import registry
from kpbench.backends.aws.refusals import SPOT_STANDARD_QUOTA, SPOT_VCPU_QUOTAS, refusal, vcpu_quota
from kpbench.core.settings import retired

# Launch refusals worth one more try with the same ClientToken (an instance profile created a
# moment ago is not yet visible to EC2; API throttling).
RETRYABLE = {"RequestLimitExceeded", "InvalidParameterValue", "IncorrectState"}


def vcpus_needed(instances, repeats=1):
    """{(quota name, code): vCPUs} that the campaign holds at once at most: with enough Snakemake
    cores every EC2 run of every repeat runs at the same time."""
    needed = {}
    for row in instances:
        kind = registry.kind(row["backend"])
        if kind.provider != "aws" or retired(row):
            continue
        family = row["instance_type"][:1].lower()
        quota = (SPOT_VCPU_QUOTAS.get(family, SPOT_STANDARD_QUOTA) if row.get("spot")
                 else vcpu_quota(row["instance_type"]))
        machines = kind.machines(row)
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
    error = error.response.get("Error", {})
    return refusal(error.get("Code", ""), error.get("Message", ""), instance_type, region)


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


def client(boto, name, region=None):
    """A client (of the session's region, or `region`) whose own retries follow botocore's standard
    mode (throttling such as RequestLimitExceeded included:
    https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html)."""
    from botocore.config import Config

    made = boto.client(name, region_name=region, config=Config(retries={"mode": "standard", "max_attempts": 8}))
    if name == "s3":
        account = boto.client("sts").get_caller_identity()["Account"]
        pin_bucket_owner(made, account)
    return made


def pin_bucket_owner(s3, account_id):
    """Every S3 call that accepts it carries ExpectedBucketOwner: a bucket of the configured name that
    belongs to another account is refused instead of being written to or read from
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html)."""
    def add(params, model, **_):
        for name in ("ExpectedBucketOwner", "ExpectedSourceBucketOwner"):  # the latter: CopyObject's source
            if name in model.input_shape.members and name not in params:
                params[name] = account_id

    if account_id:
        s3.meta.events.register("provide-client-params.s3", add)
    return s3

