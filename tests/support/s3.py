"""A real S3 test server (moto_server) in its own process, and a client for it; and one that
checks credentials, as a real store does (`authenticated_store`).

moto accepts any key unless told otherwise: `authenticated_store` seeds the store without
authentication, then `/moto-api/reset-auth` turns it on, so that only the IAM access key
made there (and nothing the environment happens to hold) can read the bucket.
"""

from __future__ import annotations

import contextlib
import json
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.procs import free_port, running


@contextlib.contextmanager
def moto_server(log_dir: Path) -> Iterator[dict[str, str]]:
    """Start moto_server on a free port; yields the AWS_* environment that reaches it."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    args = [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with running(args, log_dir / "moto.log", ready_url=f"{endpoint}/moto-api/", timeout=60):
        yield {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def s3_client(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )


SEED_KEY = "seed"  # any key works while authentication is off


@dataclass(frozen=True)
class Store:
    endpoint: str
    access_key: str
    secret_key: str

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
        )


@contextlib.contextmanager
def authenticated_store(
    host: str, port: int, log: Path, objects: dict[str, bytes]
) -> Iterator[Store]:
    """A moto server on ``host:port`` holding ``objects`` (`bucket/key` → bytes), readable
    only with the access key it yields."""
    import boto3

    endpoint = f"http://{host}:{port}"
    args = [str(Path(sys.executable).parent / "moto_server"), "-H", host, "-p", str(port)]
    with running(args, log, ready_url=f"{endpoint}/moto-api/", timeout=60):
        seed = {
            "endpoint_url": endpoint,
            "aws_access_key_id": SEED_KEY,
            "aws_secret_access_key": SEED_KEY,
            "region_name": "us-east-1",
        }
        iam = boto3.client("iam", **seed)
        iam.create_user(UserName="reader")
        iam.put_user_policy(
            UserName="reader",
            PolicyName="read",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        s3 = boto3.client("s3", **seed)
        for path, body in objects.items():
            bucket, _, name = path.partition("/")
            with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key=name, Body=body)
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth",
            b"0",
            headers={"Content-Type": "text/plain"},  # a form body would be parsed away
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        yield Store(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
