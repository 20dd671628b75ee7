"""The S3 exchange between a launcher and its instances: the bucket, private encrypted objects, and
one run folder's objects read and written by either side (names from kpbench.backends.aws.bucket_keys)."""

import hashlib
import json
import time

from kpbench import KpbenchError

SSE = {"ServerSideEncryption": "AES256"}


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


def delete_prefix(s3, bucket, prefix):
    """Remove every object under `prefix/`; returns how many. DeleteObjects answers 200 even when it
    refuses keys, naming each in Errors (https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html):
    such an answer raises, so a prefix is never reported removed while objects remain."""
    removed = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            refused = s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True}).get("Errors", [])
            if refused:
                raise KpbenchError(f"S3 kept {len(refused)} object(s) under s3://{bucket}/{prefix}/ "
                                   f"({refused[0].get('Code')}: {refused[0].get('Message')})")
            removed += len(keys)
    return removed


def bucket_exists(s3, bucket):
    try:
        s3.head_bucket(Bucket=bucket)
        return True
    except s3.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise



def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# What S3 answers for a key that is not there: 404, or 403 to a caller without s3:ListBucket, as an
# instance is (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html#API_GetObject_RequestSyntax).
MISSING = ("NoSuchKey", "404", "NotFound", "AccessDenied", "403")


def missing(error):
    return error.response.get("Error", {}).get("Code") in MISSING


class Exchange:
    """One folder of the run's layout (kpbench.backends.aws.bucket_keys), a run's or one instance's, from either side."""

    def __init__(self, s3, bucket, root):
        self.s3, self.bucket, self.root = s3, bucket, root

    def key(self, name):
        return f"{self.root}/{name}"

    def folder(self, root):
        return Exchange(self.s3, self.bucket, root)

    def put_json(self, name, obj):
        put_private(self.s3, self.bucket, self.key(name), json.dumps(obj, sort_keys=True).encode())

    def get_json(self, name):
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read())

    def get(self, name):
        """(ETag, body) of an object, or None while it is missing."""
        try:
            answer = self.s3.get_object(Bucket=self.bucket, Key=self.key(name))
        except self.s3.exceptions.ClientError as error:
            if missing(error):
                return None
            raise
        return answer["ETag"], answer["Body"].read()

    def exists(self, name):
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self.key(name))
            return True
        except self.s3.exceptions.ClientError as error:
            if missing(error):
                return False
            raise

    def download(self, name, path):
        self.s3.download_file(self.bucket, self.key(name), str(path))

    def upload(self, path, name):
        self.s3.upload_file(str(path), self.bucket, self.key(name), ExtraArgs=SSE)

    def copy_to(self, other, name):
        """A server-side copy of `name` into another folder (managed: multipart above 8 MiB)."""
        self.s3.copy({"Bucket": self.bucket, "Key": self.key(name)}, other.bucket, other.key(name), ExtraArgs=SSE)

    def wait_json(self, name, timeout_s, poll_s=2.0):
        deadline = time.time() + timeout_s
        while True:
            found = self.get(name)
            if found is not None:
                return json.loads(found[1])
            if time.time() > deadline:
                raise KpbenchError(f"{name} did not appear in s3://{self.bucket}/{self.root} within {timeout_s:.0f} s")
            time.sleep(poll_s)
