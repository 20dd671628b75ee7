"""EC2 provisioning of a run: its AMI, security group, instances (launched with every safety rail)
and their termination. The S3 exchange is kpbench.backends.aws.bucket's; the account's set-up kpbench.backends.aws.account's."""

import datetime as dt
import hashlib
import time

from kpbench import KpbenchError
from kpbench.backends.aws.api import retrying

PROJECT = "kpbench"
TAG_PROJECT, TAG_RUN, TAG_INSTANCE, TAG_EXPIRES = "project", "kpbench:run-id", "kpbench:instance", "kpbench:expires-at"
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
# Launch refusals worth one more try with the same ClientToken (an instance profile created a
# moment ago is not yet visible to EC2; API throttling).
RETRYABLE = {"RequestLimitExceeded", "InvalidParameterValue", "IncorrectState"}


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


def client_token(run_id, attempt=0):
    """Idempotency token of one launch: a retried call with it cannot start a second set. Each
    relaunch after a spot interruption is a launch of its own (`attempt` 1, 2, ...)."""
    return hashlib.sha256((run_id if attempt == 0 else f"{run_id}#{attempt}").encode()).hexdigest()[:64]


# Refusals that another availability zone may not give: no spare capacity of the type there, or the
# type not offered there (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/troubleshooting-launch.html#troubleshooting-launch-capacity).
ZONE_REFUSALS = {"InsufficientInstanceCapacity", "Unsupported"}


def zones(ec2):
    """The region's availability zones a launch may be placed in, by name."""
    found = ec2.describe_availability_zones(Filters=[{"Name": "state", "Values": ["available"]}])["AvailabilityZones"]
    return sorted(z["ZoneName"] for z in found if z.get("ZoneType", "availability-zone") == "availability-zone")


def launch_in_some_zone(ec2, params, order):
    """Launch `params` (run_instances, retried) in the first zone of `order` that has capacity (None:
    the zone EC2 picks). Returns (instances, the refusals met on the way)."""
    from botocore.exceptions import ClientError

    refused = []
    for position, zone in enumerate(order):
        placed = {**params, "Placement": {"AvailabilityZone": zone}} if zone else params
        try:
            return run_instances(ec2, placed), refused
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code not in ZONE_REFUSALS or position == len(order) - 1:
                raise
            refused.append({"zone": zone or "EC2's choice", "code": code})
            print(f"launch refused in {zone or 'the zone EC2 chose'} ({code}): trying another zone", flush=True)
    raise KpbenchError("no availability zone to launch in")


def zone_order(all_zones, avoid=None, movable=True):
    """Where to try a launch: EC2's choice first, then every zone, `avoid` (the zone that just
    reclaimed a spot instance) last and never first; only EC2's choice (the subnet's zone) when a
    configured subnet fixes the zone."""
    if not movable:
        return [None]
    if avoid is None:
        return [None, *all_zones]
    return [z for z in all_zones if z != avoid] + [avoid]


def spot_price(ec2, instance_type, zone):
    """The spot price in effect now for a Linux instance of `instance_type` in `zone` (the newest
    DescribeSpotPriceHistory entry), USD per hour; None where EC2 gives none."""
    from botocore.exceptions import ClientError

    try:
        history = ec2.describe_spot_price_history(
            InstanceTypes=[instance_type], ProductDescriptions=["Linux/UNIX"], MaxResults=10,
            Filters=[{"Name": "availability-zone", "Values": [zone]}])["SpotPriceHistory"]
    except ClientError:
        return None
    newest = max(history, key=lambda entry: entry["Timestamp"], default=None)
    return float(newest["SpotPrice"]) if newest else None


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
                  max_lifetime_h, subnet_id=None, spot=False, volume_gb=None, root_device="/dev/sda1", attempt=0):
    """Every safety rail of a launch in one place: self-terminating, IMDSv2 only, tagged, idempotent."""
    tags = [{"Key": TAG_PROJECT, "Value": PROJECT}, {"Key": TAG_RUN, "Value": run_id},
            {"Key": TAG_INSTANCE, "Value": instance_name}, {"Key": TAG_EXPIRES, "Value": expiry(max_lifetime_h)},
            {"Key": "Name", "Value": f"kpbench {instance_name} {run_id}"}]
    params = {
        "ImageId": ami, "InstanceType": instance_type, "MinCount": count, "MaxCount": count,
        "UserData": user_data, "ClientToken": client_token(run_id, attempt),
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
    if spot:  # its one-time request is tagged too, so that `cleanup` finds one left open
        params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
        params["TagSpecifications"].append({"ResourceType": "spot-instances-request", "Tags": tags})
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


def delete_security_group(ec2, group_id, wait_s=120, not_found_tries=4):
    """Delete a run's group once no instance uses it any more (termination frees it with a delay).

    InvalidGroup.NotFound is not taken at its word at once: the id came from CreateSecurityGroup, and
    a group made a moment ago may not be visible yet (eventual consistency:
    https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html); only an answer that
    persists over a few tries means another cleanup deleted it first."""
    from botocore.exceptions import ClientError

    deadline, not_found = time.time() + wait_s, 0
    while True:
        try:
            ec2.delete_security_group(GroupId=group_id)
            return True
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            not_found += code == "InvalidGroup.NotFound"
            if code == "InvalidGroup.NotFound" and not_found >= not_found_tries:
                return True
            if code not in ("DependencyViolation", "InvalidGroup.NotFound") or time.time() > deadline:
                print(f"could not delete security group {group_id} ({code}); `kpbench cleanup` retries",
                      flush=True)
                return False
            time.sleep(min(5, 2 ** (not_found - 1)) if code == "InvalidGroup.NotFound" else 5)


def tag(resource, key):
    return next((t["Value"] for t in resource.get("Tags", []) if t["Key"] == key), None)

