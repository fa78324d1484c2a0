"""The S3 artifact store (install fleetbuild[s3]): `[store] url = "s3://bucket/prefix"`.

Options in [store]: endpoint_url (else $AWS_ENDPOINT_URL_S3 / $AWS_ENDPOINT_URL), region, profile,
path_style (S3-compatible servers), multipart_chunksize ("8MiB"), max_concurrency (10),
max_attempts (5, standard retry mode). Credentials come from the standard chain (AWS_* variables,
profiles, instance roles). Checksums are computed only when required, which AWS and S3-compatible
servers both accept. Writes are atomic by S3's nature; conditional writes use If-None-Match /
If-Match. This is the only module importing boto3.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlparse

from fleetbuild.config import schema
from fleetbuild.errors import ConfigError
from fleetbuild.plugin import hookimpl
from fleetbuild.remote.redact import redact
from fleetbuild.store.api import NotFound, PreconditionFailed, StoreError, check_key

OPTIONS: Mapping[str, schema.Converter] = {
    "endpoint_url": schema.nonempty_string,
    "region": schema.nonempty_string,
    "profile": schema.nonempty_string,
    "path_style": schema.boolean,
    "multipart_chunksize": schema.size,
    "max_concurrency": schema.integer(1, 64),
    "max_attempts": schema.integer(1, 20),
}


@hookimpl
def fleetbuild_store(url: str, options: Mapping[str, Any], root: Path, source: str, env: Mapping[str, str]):
    if not url.startswith("s3://"):
        return None
    reader = schema.Reader(source, dict(options), "store")
    values = {key: reader.take(key, convert) for key, convert in OPTIONS.items() if reader.has(key)}
    reader.finish(list(OPTIONS))
    parsed = urlparse(url)
    if "@" in parsed.netloc:
        raise ConfigError(source, "store.url", f"'{redact(url)}' carries credentials, which would end up in logs",
                          "give them as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or an AWS profile (store.profile)")
    if not parsed.netloc:
        raise ConfigError(source, "store.url", f"'{url}' names no bucket", 'use s3://BUCKET/PREFIX')
    return S3Store(url, parsed.netloc, parsed.path.strip("/"), values, env)


class S3Store:
    def __init__(self, url: str, bucket: str, prefix: str, options: Mapping[str, Any], env: Mapping[str, str]) -> None:
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config
        except ImportError:
            raise ConfigError("fleet.toml", "store.url", "s3:// stores need boto3", "pip install 'fleetbuild[s3]'") from None
        self.url, self.bucket, self.prefix = url, bucket, prefix
        session = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"), aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=env.get("AWS_SESSION_TOKEN"), profile_name=options.get("profile") or env.get("AWS_PROFILE"),
            region_name=options.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1")
        config = Config(
            signature_version="s3v4", retries={"mode": "standard", "max_attempts": options.get("max_attempts", 5)},
            s3={"addressing_style": "path" if options.get("path_style") else "auto"},
            request_checksum_calculation="when_required", response_checksum_validation="when_required")
        self.endpoint = options.get("endpoint_url") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        self.client = session.client("s3", endpoint_url=self.endpoint, config=config)
        chunk = options.get("multipart_chunksize", 8 << 20)
        self.transfer = TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk,
                                       max_concurrency=options.get("max_concurrency", 10))

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, err: Exception, key: str) -> StoreError:
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        where = f"{self.url}: {key}"
        if isinstance(err, ClientError):
            code = err.response.get("Error", {}).get("Code", "")
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404") or status == 404 and code != "NoSuchBucket":
                return NotFound(f"{where}: not found")
            if code == "NoSuchBucket":
                return StoreError(f"{self.url}: bucket '{self.bucket}' does not exist (create it, or fix [store] url)")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict") or status in (409, 412):
                return PreconditionFailed(f"{where}: changed or already exists")
            if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return StoreError(f"{self.url}: access denied ({code}); check the credentials (AWS_* variables, "
                                  "profile) and the bucket policy")
            return StoreError(f"{where}: S3 error {code or status}: {err.response.get('Error', {}).get('Message', '')}")
        if isinstance(err, EndpointConnectionError):
            return StoreError(f"{self.url}: cannot reach the endpoint {self.endpoint or 'of AWS S3'} "
                              "(check store.endpoint_url / AWS_ENDPOINT_URL_S3)")
        if isinstance(err, NoCredentialsError):
            return StoreError(f"{self.url}: no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                              "or a profile)")
        return StoreError(f"{where}: {type(err).__name__}: {err}")

    def _call(self, key: str, fn, *args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except (ClientError, BotoCoreError) as err:
            raise self._error(err, key) from None

    def exists(self, key: str) -> bool:
        try:
            self._call(key, self.client.head_object, Bucket=self.bucket, Key=self._key(key))
            return True
        except NotFound:
            return False

    def read_bytes(self, key: str) -> tuple[bytes, str]:
        response = self._call(key, self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        return response["Body"].read(), response["ETag"]

    def write_bytes(self, key: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> str:
        extra: dict[str, str] = {}
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        elif if_match is not None:
            extra["IfMatch"] = if_match
        response = self._call(key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        return response["ETag"]

    def upload_file(self, key: str, path: Path) -> None:
        self._call(key, self.client.upload_file, str(path), self.bucket, self._key(key), Config=self.transfer)

    def upload_verified(self, key: str, path: Path, sha256: str) -> None:
        """Upload with the file's SHA-256 sent as ChecksumSHA256 (single-part uploads; the server
        refuses bytes that differ where it supports checksums); the file is hashed first."""
        import base64

        from fleetbuild.store.blobs import BlobMismatch, sha256_of_file

        if sha256_of_file(path) != sha256:
            raise BlobMismatch(f"{path} does not hash to {sha256[:12]}…: not stored")
        if path.stat().st_size < self.transfer.multipart_threshold:
            checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
            with open(path, "rb") as body:
                self._call(key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=body,
                           ChecksumSHA256=checksum)
        else:
            self._call(key, self.client.upload_file, str(path), self.bucket, self._key(key), Config=self.transfer,
                       ExtraArgs={"ChecksumAlgorithm": "SHA256"})

    def presign(self, key: str, expires: int = 900) -> str:
        """A GET URL for `key` valid for `expires` seconds (SigV4): for devices that hold no credentials.
        It is a secret while it lives: never log it."""
        return self._call(key, self.client.generate_presigned_url, "get_object",
                          Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires)

    def presigned_put(self, key: str, expires: int) -> str:
        """A PUT URL for exactly `key`, valid for `expires` seconds: a write-only grant (it cannot read
        or list anything) for a device's reports. A secret while it lives: never log it."""
        return self._call(key, self.client.generate_presigned_url, "put_object",
                          Params={"Bucket": self.bucket, "Key": self._key(key), "ContentType": "application/json"},
                          ExpiresIn=expires)

    def sha256(self, key: str) -> str:
        """The object's sha256, hashed as it streams."""
        import hashlib

        digest = hashlib.sha256()
        response = self._call(key, self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        for chunk in response["Body"].iter_chunks(1 << 20):
            digest.update(chunk)
        return digest.hexdigest()

    def checksum_sha256(self, key: str) -> str | None:
        """The full-object SHA-256 the server recorded at upload, as hex, or None (not kept, or a
        multipart composite)."""
        import base64

        head = self._call(key, self.client.head_object, Bucket=self.bucket, Key=self._key(key), ChecksumMode="ENABLED")
        value = head.get("ChecksumSHA256")
        if not value or "-" in value or head.get("ChecksumType") == "COMPOSITE":
            return None
        try:
            return base64.b64decode(value).hex()
        except ValueError:
            return None

    def download_file(self, key: str, path: Path) -> None:
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        os.close(fd)
        try:
            self._call(key, self.client.download_file, self.bucket, self._key(key), tmp, Config=self.transfer)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def list(self, prefix: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        if ".." in prefix.split("/"):
            raise ValueError(f"invalid store prefix {prefix!r}")
        full = (self.prefix + "/" if self.prefix else "") + prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    yield item["Key"][strip:]
        except Exception as err:
            raise self._error(err, prefix) from None

    def stat(self, key: str) -> tuple[int, float]:
        head = self._call(key, self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        return head["ContentLength"], head["LastModified"].timestamp()

    def delete(self, key: str) -> None:
        self._call(key, self.client.delete_object, Bucket=self.bucket, Key=self._key(key))
