from tests.support.s3 import s3_env  # noqa: F401 - a fixture for this folder's tests
