"""The EC2 harness's fixtures (moto server, a fresh account, played instances, a tiny dataset), for
every test of the EC2 backends; they live in test_aws.py, beside the harness they drive."""

from test_aws import aws_env, moto_endpoint, player, tiny_dataset  # noqa: F401 - fixtures, by name
