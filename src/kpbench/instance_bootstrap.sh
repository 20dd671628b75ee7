
# --- kpbench instance bootstrap (the lines above are this run's settings; no credentials: the
# instance profile grants S3 access to this run's prefix only) ---
# Playing an instance elsewhere (the tests): KPBENCH_INSTANCE_ID instead of the metadata service,
# KPBENCH_PYTHON an interpreter that has the packages, KPBENCH_SHUTDOWN instead of `shutdown`,
# KPBENCH_WORKDIR, and KPBENCH_CLUSTER_ADDRESSES instead of the instances' private addresses.
set -uo pipefail
workdir=${KPBENCH_WORKDIR:-/opt/kpbench}
halt=${KPBENCH_SHUTDOWN:-shutdown}
mkdir -p "$workdir"
exec >"$workdir/bootstrap.log" 2>&1

# Whatever happens below, the instance ends itself at its maximum lifetime (shutdown terminates it).
$halt -h "+$KPBENCH_MAX_MINUTES" || true

if [ -z "${KPBENCH_INSTANCE_ID:-}" ]; then
    token=$(curl -sS -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 600")
    KPBENCH_INSTANCE_ID=$(curl -sS -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/instance-id)
fi
export KPBENCH_INSTANCE_ID
py=""

s3() {  # s3 get|put KEY FILE, under this run's prefix, server-side encrypted, no ACL
    if [ -n "$py" ] && "$py" - "$@" <<'PY'
import os, sys, boto3
op, key, path = sys.argv[1:4]
client, bucket = boto3.client("s3"), os.environ["KPBENCH_BUCKET"]
key = f"{os.environ['KPBENCH_PREFIX']}/{key}"
owner = {"ExpectedBucketOwner": os.environ["KPBENCH_ACCOUNT"]} if os.environ.get("KPBENCH_ACCOUNT") else {}
if op == "get":
    client.download_file(bucket, key, path, ExtraArgs=owner)
else:
    client.upload_file(path, bucket, key, ExtraArgs={"ServerSideEncryption": "AES256", **owner})
PY
    then
        return 0
    fi
    # Python is not ready (or broken): the Deep Learning AMIs ship the AWS CLI, enough to report.
    command -v aws >/dev/null || return 1
    if [ "$1" = get ]; then
        aws s3 cp --only-show-errors "s3://$KPBENCH_BUCKET/$KPBENCH_PREFIX/$2" "$3"
    else
        aws s3 cp --only-show-errors --sse AES256 "$3" "s3://$KPBENCH_BUCKET/$KPBENCH_PREFIX/$2"
    fi
}

finish() {
    code=$?
    # Whatever failed, and however early: the log first (the launcher reads it as soon as it sees the
    # failure), then the failed status; through Python when it works, else the AWS CLI.
    s3 put "logs/$KPBENCH_INSTANCE_ID.log" "$workdir/bootstrap.log"
    if [ "$code" -ne 0 ]; then
        printf '{"phase": "failed", "exit_status": %d, "time": %d}\n' "$code" "$(date +%s)" >"$workdir/status.json"
        s3 put "status/$KPBENCH_INSTANCE_ID.json" "$workdir/status.json"
    fi
    $halt -h now
}
trap finish EXIT

echo "kpbench bootstrap on $KPBENCH_INSTANCE_ID"
if [ -n "${KPBENCH_PYTHON:-}" ]; then
    py=$KPBENCH_PYTHON
else
    if ! python3 -m venv "$workdir/venv"; then  # Ubuntu ships venv as a separate package
        rm -rf "$workdir/venv"
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv || exit 10
        python3 -m venv "$workdir/venv" || exit 10
    fi
    # shellcheck disable=SC2086  # the package list is words
    "$workdir/venv/bin/pip" install --quiet $KPBENCH_PACKAGES || exit 10
    py=$workdir/venv/bin/python
fi

s3 get input/bundle.tar.gz "$workdir/bundle.tar.gz" || exit 11
mkdir -p "$workdir/code" && tar -xzf "$workdir/bundle.tar.gz" -C "$workdir/code" || exit 11
export PYTHONPATH="$workdir/code"
"$py" -m kpbench remote-worker --bucket "$KPBENCH_BUCKET" --prefix "$KPBENCH_PREFIX" --workdir "$workdir"
