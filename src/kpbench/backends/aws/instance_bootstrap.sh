
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
# This instance's own folder of the run (kpbench.backends.aws.bucket_keys): the only place its role reaches.
KPBENCH_PREFIX=${KPBENCH_FOLDER//"{instance}"/$KPBENCH_INSTANCE_ID}
export KPBENCH_PREFIX
py=""

s3() {  # s3 get|put KEY FILE, in this instance's folder, server-side encrypted, no ACL; 3: no such key
    if [ -n "$py" ]; then
        "$py" - "$@" <<'PY'
import os, sys, boto3, botocore.exceptions
op, key, path = sys.argv[1:4]
client, bucket = boto3.client("s3"), os.environ["KPBENCH_BUCKET"]
key = f"{os.environ['KPBENCH_PREFIX']}/{key}"
owner = {"ExpectedBucketOwner": os.environ["KPBENCH_ACCOUNT"]} if os.environ.get("KPBENCH_ACCOUNT") else {}
try:
    if op == "get":
        client.download_file(bucket, key, path, ExtraArgs=owner)
    else:
        client.upload_file(path, bucket, key, ExtraArgs={"ServerSideEncryption": "AES256", **owner})
except botocore.exceptions.ClientError as error:  # missing: 404, or 403 without s3:ListBucket
    sys.exit(3 if error.response["Error"]["Code"] in ("404", "403", "NoSuchKey", "AccessDenied") else 1)
PY
        local rc=$?
        [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] && return "$rc"
    fi
    # Python is not ready (or broken): the Deep Learning AMIs ship the AWS CLI, enough to report.
    command -v aws >/dev/null || return 1
    if [ "$1" = get ]; then
        local said
        said=$(aws s3 cp --only-show-errors "s3://$KPBENCH_BUCKET/$KPBENCH_PREFIX/$2" "$3" 2>&1) && return 0
        echo "$said"
        case $said in *"(404)"* | *"(403)"*) return 3 ;; *) return 1 ;; esac
    fi
    aws s3 cp --only-show-errors --sse AES256 "$3" "s3://$KPBENCH_BUCKET/$KPBENCH_PREFIX/$2"
}

finish() {
    code=$?
    # Whatever failed, and however early: the log first (the launcher reads it as soon as it sees the
    # failure), then the failed status; through Python when it works, else the AWS CLI.
    s3 put "$KPBENCH_LOG_KEY" "$workdir/bootstrap.log"
    if [ "$code" -ne 0 ]; then
        printf '{"phase": "failed", "exit_status": %d, "time": %d}\n' "$code" "$(date +%s)" >"$workdir/status.json"
        s3 put "$KPBENCH_STATUS_KEY" "$workdir/status.json"
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

# The launcher copies the inputs here once it knows this instance's id, the bundle last: wait while
# it is missing (403 without s3:ListBucket, as for any key), give up on any other failure.
for attempt in $(seq 1 150); do
    s3 get "$KPBENCH_BUNDLE_KEY" "$workdir/bundle.tar.gz"
    got=$?
    [ "$got" -eq 0 ] && break
    { [ "$got" -ne 3 ] || [ "$attempt" -eq 150 ]; } && exit 11
    sleep 2
done
mkdir -p "$workdir/code" && tar -xzf "$workdir/bundle.tar.gz" -C "$workdir/code" || exit 11
export PYTHONPATH="$workdir/code"
"$py" -m kpbench remote-worker --bucket "$KPBENCH_BUCKET" --prefix "$KPBENCH_PREFIX" --workdir "$workdir"
