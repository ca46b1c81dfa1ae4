"""S3 XML: rendered documents parsed back with ElementTree and by botocore; body parsing."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from hypothesis import given
from hypothesis import strategies as st

from blobstore.core.s3 import errors, xml

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9, 987654, tzinfo=dt.UTC)
OWNER = xml.Owner("owner-id", "owner")
KEYS = ["a b+c", "dir/ü~x*y", "percent%2F", "&<>\"'", "tab\tkey"]


def _parse(document: bytes) -> ET.Element:
    assert document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    return ET.fromstring(document)


def _text(root: ET.Element, path: str) -> str | None:
    return root.findtext(path.replace("{ns}", NS))


def _texts(root: ET.Element, path: str) -> list[str | None]:
    return [element.text for element in root.findall(path.replace("{ns}", NS))]


# -- rendering -----------------------------------------------------------------------------


def test_error_document() -> None:
    error = errors.InvalidRange(extra=(("ActualObjectSize", "10"),), resource="/b/k")
    root = _parse(xml.render_error(error, "req-1"))
    assert root.tag == "Error"
    assert [child.tag for child in root] == [
        "Code",
        "Message",
        "ActualObjectSize",
        "Resource",
        "RequestId",
    ]
    assert _text(root, "Code") == "InvalidRange"
    assert _text(root, "Message") == "The requested range is not satisfiable"
    assert _text(root, "Resource") == "/b/k"
    assert _text(root, "RequestId") == "req-1"


def test_error_document_resource_override_and_escaping() -> None:
    root = _parse(xml.render_error(errors.NoSuchKey("a<b&c"), "r", resource="/b/<k>"))
    assert _text(root, "Message") == "a<b&c"
    assert _text(root, "Resource") == "/b/<k>"
    assert _parse(xml.render_error(errors.AccessDenied(), "r")).find("Resource") is None


def test_list_buckets() -> None:
    buckets = [xml.BucketEntry("a", WHEN), xml.BucketEntry("b", WHEN.replace(tzinfo=None))]
    root = _parse(xml.render_list_buckets(OWNER, buckets))
    assert root.tag == NS + "ListAllMyBucketsResult"
    assert _text(root, "{ns}Owner/{ns}ID") == "owner-id"
    assert _text(root, "{ns}Owner/{ns}DisplayName") == "owner"
    assert _texts(root, "{ns}Buckets/{ns}Bucket/{ns}Name") == ["a", "b"]
    assert (
        _texts(root, "{ns}Buckets/{ns}Bucket/{ns}CreationDate") == ["2024-05-06T07:08:09.987Z"] * 2
    )


def test_format_time_converts_to_utc() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert xml.format_time(dt.datetime(2024, 1, 1, 2, 0, tzinfo=plus_two)) == (
        "2024-01-01T00:00:00.000Z"
    )


@pytest.mark.parametrize(("region", "text"), [("us-east-1", None), ("eu-west-1", "eu-west-1")])
def test_location(region: str, text: str | None) -> None:
    root = _parse(xml.render_location(region))
    assert root.tag == NS + "LocationConstraint"
    assert root.text == text


def _entries(owner: xml.Owner | None = None) -> list[xml.ObjectEntry]:
    return [xml.ObjectEntry(key, WHEN, "abc", 3, owner) for key in KEYS]


def test_list_objects_v2_plain() -> None:
    document = xml.render_list_objects_v2(
        bucket="b",
        prefix="",
        delimiter=None,
        max_keys=1000,
        is_truncated=True,
        contents=_entries(),
        common_prefixes=["p/"],
        continuation_token="tok",
        next_continuation_token="next",
    )
    root = _parse(document)
    assert root.tag == NS + "ListBucketResult"
    assert _text(root, "{ns}Name") == "b"
    assert _text(root, "{ns}Prefix") == ""
    assert root.find(NS + "Delimiter") is None
    assert root.find(NS + "StartAfter") is None
    assert root.find(NS + "EncodingType") is None
    assert _text(root, "{ns}MaxKeys") == "1000"
    assert _text(root, "{ns}KeyCount") == str(len(KEYS) + 1)
    assert _text(root, "{ns}IsTruncated") == "true"
    assert _text(root, "{ns}ContinuationToken") == "tok"
    assert _text(root, "{ns}NextContinuationToken") == "next"
    assert _texts(root, "{ns}Contents/{ns}Key") == KEYS
    assert set(_texts(root, "{ns}Contents/{ns}ETag")) == {'"abc"'}
    assert set(_texts(root, "{ns}Contents/{ns}Size")) == {"3"}
    assert set(_texts(root, "{ns}Contents/{ns}StorageClass")) == {"STANDARD"}
    assert set(_texts(root, "{ns}Contents/{ns}LastModified")) == {"2024-05-06T07:08:09.987Z"}
    assert root.find(f"{NS}Contents/{NS}Owner") is None
    assert _texts(root, "{ns}CommonPrefixes/{ns}Prefix") == ["p/"]


def test_list_objects_v2_url_encoding_round_trips() -> None:
    document = xml.render_list_objects_v2(
        bucket="b",
        prefix="a b",
        delimiter="/",
        max_keys=2,
        is_truncated=False,
        contents=_entries(OWNER),
        common_prefixes=["a b/c d/"],
        start_after="a b~",
        encoding_type="url",
    )
    root = _parse(document)
    assert _text(root, "{ns}EncodingType") == "url"
    assert _text(root, "{ns}Prefix") == "a+b"
    assert _text(root, "{ns}StartAfter") == "a+b%7E"
    assert _text(root, "{ns}Delimiter") == "/"
    keys = _texts(root, "{ns}Contents/{ns}Key")
    assert keys[1] == "dir/%C3%BC%7Ex*y"
    assert [unquote_plus(key or "") for key in keys] == KEYS
    assert _texts(root, "{ns}CommonPrefixes/{ns}Prefix") == ["a+b/c+d/"]
    assert set(_texts(root, "{ns}Contents/{ns}Owner/{ns}ID")) == {"owner-id"}


def test_list_objects_v1() -> None:
    document = xml.render_list_objects_v1(
        bucket="b",
        prefix="p",
        delimiter="/",
        marker="m k",
        max_keys=10,
        is_truncated=True,
        contents=_entries(OWNER),
        common_prefixes=[],
        next_marker="n k",
        encoding_type="url",
    )
    root = _parse(document)
    assert _text(root, "{ns}Marker") == "m+k"
    assert _text(root, "{ns}NextMarker") == "n+k"
    assert _text(root, "{ns}Delimiter") == "/"
    assert _text(root, "{ns}IsTruncated") == "true"
    assert root.find(NS + "KeyCount") is None
    assert [unquote_plus(k or "") for k in _texts(root, "{ns}Contents/{ns}Key")] == KEYS


def test_list_objects_v1_without_next_marker() -> None:
    document = xml.render_list_objects_v1(
        bucket="b",
        prefix="",
        delimiter=None,
        marker="",
        max_keys=1000,
        is_truncated=False,
        contents=[],
        common_prefixes=[],
    )
    root = _parse(document)
    assert _text(root, "{ns}Marker") == ""
    assert root.find(NS + "NextMarker") is None


@pytest.mark.parametrize("render", [xml.render_list_objects_v1, xml.render_list_objects_v2])
def test_unknown_encoding_type_is_refused(render: Any) -> None:
    arguments: dict[str, Any] = {
        "bucket": "b",
        "prefix": "",
        "delimiter": None,
        "max_keys": 1,
        "is_truncated": False,
        "contents": [],
        "common_prefixes": [],
        "encoding_type": "base64",
    }
    if render is xml.render_list_objects_v1:
        arguments["marker"] = ""
    with pytest.raises(errors.InvalidArgument, match="Encoding"):
        render(**arguments)


# -- what botocore makes of our documents --------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        yield self.body


def _answering(status: int, body: bytes) -> Any:
    session = boto3.session.Session(
        aws_access_key_id="AK", aws_secret_access_key="SK", region_name="us-east-1"
    )
    client = session.client(
        "s3",
        endpoint_url="http://127.0.0.1:9000",
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )

    def answer(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, {}, _Raw(body))

    client.meta.events.register("before-send", answer)
    return client


def test_boto3_reads_url_encoded_listing() -> None:
    document = xml.render_list_objects_v2(
        bucket="b",
        prefix="",
        delimiter="/",
        max_keys=1000,
        is_truncated=False,
        contents=_entries(),
        common_prefixes=["a b+/"],
        encoding_type="url",
    )
    result = _answering(200, document).list_objects_v2(Bucket="b", Delimiter="/")
    assert [item["Key"] for item in result["Contents"]] == KEYS
    assert result["CommonPrefixes"] == [{"Prefix": "a b+/"}]
    assert result["Contents"][0]["LastModified"] == WHEN.replace(microsecond=987000)
    assert result["KeyCount"] == len(KEYS) + 1


def test_boto3_reads_list_buckets_and_location() -> None:
    buckets = xml.render_list_buckets(OWNER, [xml.BucketEntry("b1", WHEN)])
    result = _answering(200, buckets).list_buckets()
    assert [b["Name"] for b in result["Buckets"]] == ["b1"]
    location = _answering(200, xml.render_location("us-east-1")).get_bucket_location(Bucket="b")
    assert location["LocationConstraint"] is None


def test_boto3_reads_error_with_region() -> None:
    error = errors.AuthorizationHeaderMalformed("wrong region", extra=(("Region", "r1"),))
    client = _answering(400, xml.render_error(error, "rid", "/b"))
    with pytest.raises(client.exceptions.ClientError) as caught:
        client.list_objects_v2(Bucket="b")
    assert caught.value.response["Error"]["Code"] == "AuthorizationHeaderMalformed"
    assert caught.value.response["Error"]["Region"] == "r1"


# -- parsing -------------------------------------------------------------------------------

CONFIG = (
    b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>"
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", None),
        (b"  \n", None),
        (CONFIG % b"eu-west-1", "eu-west-1"),
        (CONFIG % b" us-east-1 ", "us-east-1"),
        (CONFIG % b"", None),
        (b'<?xml version="1.0" encoding="UTF-8"?>\n' + CONFIG % b"r", "r"),
        (b"<CreateBucketConfiguration><LocationConstraint>r</LocationConstraint>"
         b"</CreateBucketConfiguration>", "r"),
        (b"<CreateBucketConfiguration/>", None),
        (b"\xef\xbb\xbf" + CONFIG % b"r", "r"),
        (b"<?xml version='1.0' encoding='ISO-8859-1'?>" + CONFIG % b"r", "r"),
        (b"<CreateBucketConfiguration><!-- c --></CreateBucketConfiguration>", None),
    ],
)  # fmt: skip
def test_create_bucket_configuration(body: bytes, expected: str | None) -> None:
    assert xml.parse_create_bucket_configuration(body) == expected


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<CreateBucketConfiguration><LocationConstraint>&lol2;</LocationConstraint>
</CreateBucketConfiguration>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<CreateBucketConfiguration><LocationConstraint>&xxe;</LocationConstraint>
</CreateBucketConfiguration>"""


@pytest.mark.parametrize(
    "body",
    [
        b"<",
        b"not xml",
        b"<CreateBucketConfiguration>",
        CONFIG % b"<b>r</b>",
        b"<Other/>",
        b'<CreateBucketConfiguration xmlns="urn:other"/>',
        b"<CreateBucketConfiguration><Other/></CreateBucketConfiguration>",
        b"<CreateBucketConfiguration><LocationConstraint>a</LocationConstraint>"
        b"<LocationConstraint>b</LocationConstraint></CreateBucketConfiguration>",
        b'<CreateBucketConfiguration><x:LocationConstraint xmlns:x="urn:x">a'
        b"</x:LocationConstraint></CreateBucketConfiguration>",
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        (b"<?xml version='1.0' encoding='UTF-16'?>" + BILLION_LAUGHS[21:])
        .decode()
        .encode("utf-16"),
        "<?xml version='1.0' encoding='UTF-16'?><!DOCTYPE x><CreateBucketConfiguration/>".encode(
            "utf-16-le"
        ),
        b"\xff\xfe<\x00",
        b"<CreateBucketConfiguration>\x80</CreateBucketConfiguration>",
        b"<CreateBucketConfiguration>&undefined;</CreateBucketConfiguration>",
        b" " * (xml.MAX_BODY_BYTES + 1) + b"<CreateBucketConfiguration/>",
    ],
)
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(errors.MalformedXML) as caught:
        xml.parse_create_bucket_configuration(body)
    assert caught.value.status == 400


def test_parse_document_returns_the_root() -> None:
    root = xml.parse_document(b"<Delete><Quiet>true</Quiet></Delete>", "Delete")
    assert root.findtext("Quiet") == "true"


# -- properties ----------------------------------------------------------------------------

# Characters XML 1.0 can carry as they are (``\r`` is normalised to ``\n`` by parsers).
xml_safe_text = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\ufffe\uffff").filter(
        lambda c: c in "\t\n" or c >= " "
    ),
    min_size=1,
    max_size=40,
)
any_key = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40)


def _listing(keys: list[str], prefix: str, encoding_type: str | None) -> bytes:
    return xml.render_list_objects_v2(
        bucket="b",
        prefix=prefix,
        delimiter="/",
        max_keys=1000,
        is_truncated=False,
        contents=[xml.ObjectEntry(key, WHEN, "e", 1) for key in keys],
        common_prefixes=[prefix],
        encoding_type=encoding_type,
    )


@given(keys=st.lists(any_key, max_size=5), prefix=any_key)
def test_url_encoded_listing_round_trips_any_key(keys: list[str], prefix: str) -> None:
    root = _parse(_listing(keys, prefix, "url"))
    assert [unquote_plus(k or "") for k in _texts(root, "{ns}Contents/{ns}Key")] == keys
    assert unquote_plus(_text(root, "{ns}Prefix") or "") == prefix


@given(keys=st.lists(xml_safe_text, max_size=5), prefix=xml_safe_text)
def test_plain_listing_round_trips_xml_safe_keys(keys: list[str], prefix: str) -> None:
    root = _parse(_listing(keys, prefix, None))
    assert _texts(root, "{ns}Contents/{ns}Key") == keys
    assert _text(root, "{ns}CommonPrefixes/{ns}Prefix") == prefix


def test_undecodable_prefix_echo_does_not_raise() -> None:
    assert _text(_parse(_listing([], "a\udcff", None)), "{ns}Prefix") == "a?"
    assert _text(_parse(_listing([], "a\udcff", "url")), "{ns}Prefix") == "a%FF"
