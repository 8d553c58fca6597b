# schemathesis hooks for scripts/api-fuzz: strategies for the admin API document's own formats.
#
# The document (ward-api) names each value no pattern can describe with a format: a duration
# within a range, an SSLProtocol line, an OpenSSL cipher list, a PEM file on the server, a
# whole conf file. Without a strategy, schemathesis would send any string matching the
# pattern as "valid" data, and the server's 400 for "0s" as an interval would read as a
# broken promise. These strategies draw only values the server must accept, so the positive
# checks hold the server to the document, and negative data stays what the document refuses.
#
# Every TLS value keeps the console reachable by the fuzzer's own client (TLS 1.2 and 1.3,
# modern suites, the server's own certificate pair): an accepted `harden apply` really
# rewrites the listeners' conf files.
#
# Environment: WARD_FUZZ_DATA is the data dir of the server under test.

import itertools
import os
import re

from hypothesis import strategies as st
import schemathesis
import schemathesis.specs.openapi.negative as negative

DATA = os.environ["WARD_FUZZ_DATA"]


def duration(low_s, high_s):
    """A duration in ward's syntax, from low_s to high_s seconds, in one of its units."""
    units = [("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
    choices = []
    for suffix, size in units:
        low = max(1, -(-low_s // size))
        high = high_s // size
        if low <= high:
            choices.append(st.integers(low, high).map(lambda n, s=suffix: f"{n}{s}"))
    if low_s == 0:
        choices.append(st.just("0s"))
    return st.one_of(choices)


DAY = 86400
schemathesis.openapi.format("ward-interval", duration(1, 365 * DAY))
schemathesis.openapi.format("ward-randomize", duration(0, 365 * DAY))
schemathesis.openapi.format(
    "ward-token-lifetime", st.one_of(st.just("never"), duration(60, 365 * DAY))
)
schemathesis.openapi.format(
    "ward-package-lifetime",
    st.one_of(duration(1, 30 * DAY), st.integers(1, 999).map(lambda n: f"{n}ms")),
)
schemathesis.openapi.format("ward-lookback", duration(1, 3650 * DAY))

# Server list entries: each one a new host, so that no list holds one server twice.
_hosts = itertools.count(1)
schemathesis.openapi.format(
    "ward-server-entry",
    st.builds(
        lambda priority, scheme, port: f"{priority}:{scheme}://mgr{next(_hosts)}.example.com:{port}",
        st.integers(1, 16),
        st.sampled_from(["https", "http"]),
        st.integers(1, 65535),
    ),
)

# SSLProtocol lines that keep TLS 1.2 and 1.3: bare words, or `all` with older ones removed;
# any case, as Apache reads them.
_case = st.sampled_from([str, str.lower, str.upper])
_older = st.lists(st.sampled_from(["SSLv2", "SSLv3", "TLSv1", "TLSv1.1"]), unique=True)
ssl_protocol = st.one_of(
    st.builds(
        lambda extra, case: " ".join(case(w) for w in ["TLSv1.2", "TLSv1.3"] + extra),
        st.lists(st.sampled_from(["+TLSv1.1", "+TLSv1"]), unique=True, max_size=1),
        _case,
    ),
    st.builds(
        lambda removed, case: " ".join(case(w) for w in ["all"] + [f"-{v}" for v in removed]),
        _older,
        _case,
    ),
    st.sampled_from(["TLSv1.2 +TLSv1.3", "-all +TLSv1.2 +TLSv1.3"]),
)
schemathesis.openapi.format("ssl-protocol", ssl_protocol)

schemathesis.openapi.format(
    "openssl-cipher-list",
    st.sampled_from(
        [
            "HIGH:!aNULL:!MD5",
            "ECDHE+AESGCM",
            "ECDHE+AESGCM:ECDHE+CHACHA20",
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:!aNULL",
            "DEFAULT",
        ]
    ),
)
schemathesis.openapi.format(
    "openssl-tls13-suites",
    st.lists(
        st.sampled_from(
            ["TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"]
        ),
        min_size=1,
        unique=True,
    ).map(":".join),
)

# The server's own pair, by relative and by absolute path: a pair that matches.
schemathesis.openapi.format(
    "pem-certificate-file",
    st.sampled_from(["certs/server.pem", os.path.join(DATA, "certs/server.pem")]),
)
schemathesis.openapi.format(
    "pem-key-file",
    st.sampled_from(["certs/server.key", os.path.join(DATA, "certs/server.key")]),
)

# A whole conf file: the server's own ssl.conf with another SSLProtocol line.
with open(os.path.join(DATA, "conf/ssl/ssl.conf")) as f:
    _conf = f.read()


def _with_protocol(line):
    kept = [l for l in _conf.splitlines() if not l.strip().lower().startswith("sslprotocol")]
    return "\n".join(kept + [f"SSLProtocol {line}", ""])


schemathesis.openapi.format("apache-ssl-conf", ssl_protocol.map(_with_protocol))


# Negative data: schemathesis (4.32) deems every string of a custom format invalid when it
# checks that a mutated body really breaks the document, so a body whose mutated field went
# null while a sibling kept a valid SSLProtocol line would count as invalid, and the server's
# 200 as a bug. This predicate says which strings are valid for some ward format, generously
# (a string one of them takes is never called invalid); anything else stays invalid, as the
# server refuses it.
_DURATION = re.compile(r"^\s*([0-9]+\s*(ms|s|m|h|d)\s*)+$")
_WORD = r"[+-]?(all|sslv2|sslv3|tlsv1|tlsv1\.1|tlsv1\.2|tlsv1\.3)"
_PROTOCOL = re.compile(rf"^\s*{_WORD}(\s+{_WORD})*\s*$", re.IGNORECASE)
_ENTRY = re.compile(r"^[0-9]+:https?://\S+:[0-9]+$")
_CIPHERS = re.compile(r"^[A-Za-z0-9!+:@=_.\-]+$")
_PEM = {"certs/server.pem", "certs/server.key"}


def _ward_format_is_valid(value):
    if not isinstance(value, str):
        return True  # formats constrain strings only
    return bool(
        value == "never"
        or _DURATION.match(value)
        or _PROTOCOL.match(value)
        or _ENTRY.match(value)
        or _CIPHERS.match(value)
        or value in _PEM
        or value.startswith(DATA)
        or "SSL" in value
    )


negative._always_invalid = _ward_format_is_valid
