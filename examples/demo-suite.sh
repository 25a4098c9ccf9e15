#!/bin/sh
# A tiny "integration test suite" for `cargo xtask demo`: the kind of work
# an application's tests do. `trace run` records every file it touches.
set -eu
pass=0
check() { pass=$((pass + 1)); echo "ok $pass - $1"; }

# Read configuration the way applications do.
grep -q '^ID=' /etc/os-release && check "os-release has an ID"
[ -n "$(cat /etc/hostname)" ] && check "hostname is set"

# Use a scripting runtime with dynamic imports.
/usr/bin/python3 -c 'import json, hashlib; json.dumps({"sha": hashlib.sha256(b"x").hexdigest()})' \
    && check "python3 imports json and hashlib"

# Text tools from coreutils, grep and sed.
echo "hello trace" | sed 's/hello/goodbye/' | grep -q goodbye && check "sed and grep"

# A file that does not exist: the trace lists it under failed lookups.
[ ! -e /etc/this-file-does-not-exist ] && check "missing file is missing"

echo "1..$pass"
