import datetime as dt

import pytest

from blobstore.core.s3.conditions import NOT_MODIFIED, evaluate
from blobstore.core.s3.errors import PreconditionFailed

T = dt.datetime(2026, 5, 1, 12, 0, 0, 500000, tzinfo=dt.UTC)
BEFORE = "Fri, 01 May 2026 11:00:00 GMT"
AT = "Fri, 01 May 2026 12:00:00 GMT"
AFTER = "Fri, 01 May 2026 13:00:00 GMT"


@pytest.mark.parametrize("headers, outcome", [
    ({}, None),
    ({"if-match": '"abc"'}, None), ({"if-match": "*"}, None), ({"if-match": '"x", "abc"'}, None),
    ({"if-match": '"nope"'}, "412"),
    ({"if-none-match": '"abc"'}, NOT_MODIFIED), ({"if-none-match": '"nope"'}, None),
    ({"if-modified-since": AT}, NOT_MODIFIED), ({"if-modified-since": BEFORE}, None),
    ({"if-unmodified-since": AT}, None), ({"if-unmodified-since": BEFORE}, "412"),
    ({"if-match": '"abc"', "if-unmodified-since": BEFORE}, None),
    ({"if-none-match": '"nope"', "if-modified-since": AFTER}, None),
    ({"if-modified-since": "garbage"}, None),
])
def test_rules(headers, outcome):
    if outcome == "412":
        with pytest.raises(PreconditionFailed):
            evaluate(headers, "abc", T)
    else:
        assert evaluate(headers, "abc", T) == outcome


def test_copy_source_conditions_fail_instead_of_304():
    with pytest.raises(PreconditionFailed):
        evaluate({"x-amz-copy-source-if-none-match": '"abc"'}, "abc", T,
                 prefix="x-amz-copy-source-if-")
