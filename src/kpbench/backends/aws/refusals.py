"""What EC2 refusals mean, in plain language, with the quota to raise: kept apart from the client
(no botocore here) so that the paper can quote a refusal without a cloud SDK."""

from kpbench import KpbenchError

# Service Quotas codes of the on-demand vCPU quotas, by instance family's first letter.
VCPU_QUOTAS = {
    "p": ("Running On-Demand P instances", "L-417A185B"),
    "g": ("Running On-Demand G and VT instances", "L-DB2E81BA"),
    "v": ("Running On-Demand G and VT instances", "L-DB2E81BA"),
}
STANDARD_QUOTA = ("Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", "L-1216C47A")
# Spot vCPU quotas (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-on-demand-instances.html#ec2-on-demand-instances-limits
# and the spot counterpart in https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/using-spot-limits.html).
SPOT_VCPU_QUOTAS = {
    "p": ("All P Spot Instance Requests", "L-7212CCBC"),
    "g": ("All G and VT Spot Instance Requests", "L-3819A6DF"),
    "v": ("All G and VT Spot Instance Requests", "L-3819A6DF"),
}
SPOT_STANDARD_QUOTA = ("All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests", "L-34B43A08")


def vcpu_quota(instance_type):
    return VCPU_QUOTAS.get(instance_type[:1].lower(), STANDARD_QUOTA)


def refusal(code, message, instance_type=None, region=None):
    """The KpbenchError for an AWS error code and its message: what happened and what to do."""
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
