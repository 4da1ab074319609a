"""Schemathesis hooks for the fuzz run (tests/tests/e2e/fuzz.rs loads this
module with SCHEMATHESIS_HOOKS): how to make the bodies of the media types
it has no generator for. tus's PATCH and creation-with-upload carry raw
bytes as `application/offset+octet-stream`."""
from hypothesis import strategies as st

import schemathesis

schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=4096))
