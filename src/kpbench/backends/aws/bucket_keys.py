"""Where a run's objects live in the exchange bucket, written once for the launcher and the instance.

  <prefix>/<run id>/input/          the launcher's copy of the run's inputs (no instance reaches it)
  <prefix>/<run id>/<instance ARN>/ one instance's folder, the only place its role reaches:
      input/   spec.json, launch.json (limits), dataset.npz, bundle.tar.gz, cluster.json (clusters)
      input/checkpoint.tar   (a relaunch after a spot interruption) the checkpoint to resume from
      status.json   the instance's phase and heartbeat
      checkpoint.tar   (spot rows) the chief's checkpoint, replaced after every epoch
      log.txt       the bootstrap's log, uploaded on exit
      steps.json, allreduce.json   its step times and (clusters) its all-reduce sweep
      result/       the chief's run files, then manifest.json with their checksums (written last: a
                    result without a manifest, or whose files do not match it, is never collected)

Each instance has its own folder so that its role can be confined to it (config/iam/instance-role-policy.json).
Importable without boto3: the instance's bootstrap gets these names through its user data.
"""

BUNDLE, SPEC, LAUNCH, DATASET, CLUSTER = (f"input/{name}" for name in (
    "bundle.tar.gz", "spec.json", "launch.json", "dataset.npz", "cluster.json"))
# The inputs every instance gets, in the order the launcher copies them: the bundle last, since the
# bootstrap waits for it and then finds the others in place.
INPUTS = (SPEC, LAUNCH, DATASET, BUNDLE)
STATUS, LOG, STEPS, ALLREDUCE = "status.json", "log.txt", "steps.json", "allreduce.json"
CHECKPOINT, RESUME_FROM = "checkpoint.tar", "input/checkpoint.tar"
MANIFEST = "result/manifest.json"
# What an instance writes, and all its role may write (kpbench.backends.aws.account.instance_role_policy).
OUTPUTS = (STATUS, LOG, STEPS, ALLREDUCE, CHECKPOINT, "result/*")
INSTANCE = "{instance}"  # stands for the instance id in a folder name the bootstrap completes


def result(name):
    return f"result/{name}"


def run_prefix(prefix, run_id):
    return f"{prefix}/{run_id}"


def partition(region):
    """The ARN partition of a region (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference-arns.html)."""
    if region.startswith("cn-"):
        return "aws-cn"
    return "aws-us-gov" if region.startswith("us-gov-") else "aws"


def instance_arn(region, account, instance_id):
    return f"arn:{partition(region)}:ec2:{region}:{account}:instance/{instance_id}"


def instance_folder(run_root, region, account, instance_id):
    """`<run root>/<instance ARN>`: the instance's ARN is what its role's policy reads from the request."""
    return f"{run_root}/{instance_arn(region, account, instance_id)}"
