"""s3cmd, rclone, the minio client and awscli against a real cluster, small and medium files,
unicode names, listings, deletes; every byte compared."""

from __future__ import annotations

import filecmp
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import need

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
NAMES = ["plain.txt", "with space.bin", "ünïcødé/ファイル.dat", "deep/a/b/c/d.txt", "plus+sign",
         "percent%20literal", "emoji-\U0001f600.txt"]


def make_tree(root: Path) -> Path:
    for number, name in enumerate(NAMES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(number * 70_000 + 1))
    return root


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args[:3]}: {result.stderr[-2000:]}"
    return result.stdout


def test_s3cmd_put_get_ls_del(compat_cluster, tmp_path):
    s3cmd = need("s3cmd")
    host = compat_cluster.config.by_role("gateway")[0].address
    config = tmp_path / "s3cfg"
    cert = compat_cluster.config.tls_cert_file
    config.write_text(f"""[default]
access_key = {compat_cluster.credentials.access_key}
secret_key = {compat_cluster.credentials.secret_key}
host_base = {host}
host_bucket = {host}
use_https = {bool(cert)}
ca_certs_file = {cert}
check_ssl_certificate = True
signature_v2 = False
bucket_location = us-east-1
""")
    base = [s3cmd, "-c", str(config)]
    run(base + ["mb", "s3://s3cmd-bucket"])
    source = tmp_path / "s3cmd-file"
    source.write_bytes(os.urandom(3 * MIB + 17))
    run(base + ["put", str(source), "s3://s3cmd-bucket/dir/file name"])
    listing = run(base + ["ls", "s3://s3cmd-bucket/dir/"])
    assert "file name" in listing
    run(base + ["get", "s3://s3cmd-bucket/dir/file name", str(tmp_path / "back")])
    assert filecmp.cmp(source, tmp_path / "back", shallow=False)
    run(base + ["del", "s3://s3cmd-bucket/dir/file name"])
    assert "file name" not in run(base + ["ls", "s3://s3cmd-bucket/dir/"])
    run(base + ["rb", "s3://s3cmd-bucket"])


def rclone_env(cluster) -> dict[str, str]:
    # rclone's AWS SDK cannot combine AWS_CA_BUNDLE with its own HTTP transport.
    base = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    if cluster.config.tls_cert_file:
        base["RCLONE_CA_CERT"] = cluster.config.tls_cert_file
    return dict(base, RCLONE_CONFIG_BS_TYPE="s3", RCLONE_CONFIG_BS_PROVIDER="Other",
                RCLONE_CONFIG_BS_ACCESS_KEY_ID=cluster.credentials.access_key,
                RCLONE_CONFIG_BS_SECRET_ACCESS_KEY=cluster.credentials.secret_key,
                RCLONE_CONFIG_BS_ENDPOINT=cluster.endpoint, RCLONE_CONFIG_BS_REGION="us-east-1",
                RCLONE_CONFIG_BS_FORCE_PATH_STYLE="true", RCLONE_CONFIG="/dev/null")


def test_rclone_copy_check_delete_with_unicode_tree(compat_cluster, tmp_path):
    rclone = need("rclone")
    env = rclone_env(compat_cluster)
    tree = make_tree(tmp_path / "tree")
    run([rclone, "mkdir", "bs:rclone-bucket"], env)
    run([rclone, "copy", str(tree), "bs:rclone-bucket/tree"], env)
    run([rclone, "check", str(tree), "bs:rclone-bucket/tree"], env)  # exit 0: no difference
    run([rclone, "copy", "bs:rclone-bucket/tree", str(tmp_path / "back")], env)
    for name in NAMES:
        assert (tmp_path / "back" / name).read_bytes() == (tree / name).read_bytes(), name
    run([rclone, "delete", "bs:rclone-bucket/tree"], env)
    assert run([rclone, "lsf", "-R", "bs:rclone-bucket"], env).strip() == ""


def test_minio_client(compat_cluster):
    minio = pytest.importorskip("minio")
    import io

    host = compat_cluster.config.by_role("gateway")[0].address
    import urllib3

    cert = compat_cluster.config.tls_cert_file
    client = minio.Minio(host, access_key=compat_cluster.credentials.access_key,
                         secret_key=compat_cluster.credentials.secret_key, secure=bool(cert),
                         region="us-east-1",
                         http_client=urllib3.PoolManager(ca_certs=cert or None))
    client.make_bucket("minio-bucket")
    assert client.bucket_exists("minio-bucket")
    data = os.urandom(2 * MIB + 5)
    client.put_object("minio-bucket", "obj/ü.bin", io.BytesIO(data), len(data))
    response = client.get_object("minio-bucket", "obj/ü.bin")
    try:
        assert hashlib.sha256(response.read()).digest() == hashlib.sha256(data).digest()
    finally:
        response.close()
        response.release_conn()
    names = [o.object_name for o in client.list_objects("minio-bucket", recursive=True)]
    assert names == ["obj/ü.bin"]
    stat = client.stat_object("minio-bucket", "obj/ü.bin")
    assert stat.size == len(data)
    client.remove_object("minio-bucket", "obj/ü.bin")
    client.remove_bucket("minio-bucket")


def aws_env(cluster) -> dict[str, str]:
    env = dict(os.environ, AWS_ACCESS_KEY_ID=cluster.credentials.access_key,
               AWS_SECRET_ACCESS_KEY=cluster.credentials.secret_key,
               AWS_DEFAULT_REGION="us-east-1")
    if cluster.config.tls_cert_file:
        env["AWS_CA_BUNDLE"] = cluster.config.tls_cert_file
    return env


def test_awscli_s3_and_s3api(compat_cluster, tmp_path):
    aws = need("aws")
    env = aws_env(compat_cluster)
    base = [aws, "--endpoint-url", compat_cluster.endpoint]
    tree = make_tree(tmp_path / "tree")
    run(base + ["s3", "mb", "s3://awscli-bucket"], env)
    run(base + ["s3", "sync", str(tree), "s3://awscli-bucket/tree"], env)
    listing = run(base + ["s3", "ls", "--recursive", "s3://awscli-bucket/tree/"], env)
    assert all(name.split("/")[-1] in listing for name in NAMES)
    run(base + ["s3", "sync", "s3://awscli-bucket/tree", str(tmp_path / "back")], env)
    for name in NAMES:
        assert (tmp_path / "back" / name).read_bytes() == (tree / name).read_bytes(), name
    head = run(base + ["s3api", "head-object", "--bucket", "awscli-bucket",
                       "--key", "tree/plain.txt"], env)
    assert '"ContentLength": 1' in head
    run(base + ["s3", "rm", "--recursive", "s3://awscli-bucket/tree"], env)
    assert run(base + ["s3api", "list-objects-v2", "--bucket", "awscli-bucket"], env).strip() in (
        "", '{\n    "RequestCharged": null\n}') or "Contents" not in run(
        base + ["s3api", "list-objects-v2", "--bucket", "awscli-bucket"], env)


def test_awscli_one_gib_goes_multipart_and_reads_back(compat_cluster, tmp_path):
    if not compat_cluster.config.tls_cert_file:
        pytest.skip("run once, over TLS, where awscli also streams aws-chunked parts")
    aws = need("aws")
    env = aws_env(compat_cluster)
    base = [aws, "--endpoint-url", compat_cluster.endpoint]
    source = tmp_path / "one-gib"
    digest = hashlib.sha256()
    with open(source, "wb") as handle:
        for _ in range(64):
            chunk = os.urandom(16 * MIB)
            digest.update(chunk)
            handle.write(chunk)
    run(base + ["s3", "mb", "s3://gib-bucket"], env)
    run(base + ["s3", "cp", str(source), "s3://gib-bucket/one-gib"], env, timeout=600)
    source.unlink()
    head = run(base + ["s3api", "head-object", "--bucket", "gib-bucket", "--key", "one-gib"], env)
    assert '-' in head.split('"ETag"')[1].split("\n")[0]  # an md5-of-md5s-N ETag: multipart
    target = tmp_path / "back"
    run(base + ["s3", "cp", "s3://gib-bucket/one-gib", str(target)], env, timeout=600)
    readback = hashlib.sha256()
    with open(target, "rb") as handle:
        while chunk := handle.read(16 * MIB):
            readback.update(chunk)
    assert readback.hexdigest() == digest.hexdigest()
