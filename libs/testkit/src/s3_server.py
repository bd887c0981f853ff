"""moto's S3 server with SigV4 checking on, seeded with one IAM user whose
access key is given (so that a restarted server accepts the same
credentials) and one bucket. Started by libs/testkit/src/s3.rs.

usage: s3_server.py PORT BUCKET ACCESS_KEY_ID SECRET_ACCESS_KEY REGION
"""
import json
import sys
import time

from moto import settings
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iam.models import iam_backends
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.s3.models import s3_backends

port, bucket, key_id, secret, region = sys.argv[1:6]
iam = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
iam.create_user(region_name=region, user_name="magnetar")
policy = {"Version": "2012-10-17",
          "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
iam.put_user_policy("magnetar", "s3-all", json.dumps(policy))
key = iam.create_access_key("magnetar")
key.access_key_id = key_id
key.secret_access_key = secret
s3_backends[DEFAULT_ACCOUNT_ID]["aws"].create_bucket(bucket, region)
# Every request from now on is authenticated: a bad signature is refused.
settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(port), verbose=False)
server.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
