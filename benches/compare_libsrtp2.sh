#!/usr/bin/env bash
# SRTP per packet, ours against libsrtp2, in one run on the same machine:
# builds benches/libsrtp2/bench.c (linked with the system libsrtp2), runs
# `cargo bench -p benches --bench srtp` and the C harness on the same keys
# and packets, and prints ns/packet for each and the ratio ours/libsrtp2
# (below 1: we are faster).
#
#   benches/compare_libsrtp2.sh [SECONDS_PER_C_CASE]
#
# Needs the Debian package libsrtp2-dev, a C compiler and python3 (to read
# criterion's estimates). RUSTFLAGS from the environment are passed on;
# none are set here (see the note printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -f /usr/include/srtp2/srtp.h ] || { echo "libsrtp2 headers missing: apt-get install libsrtp2-dev" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed to read criterion's estimates" >&2; exit 1; }
seconds="${1:-3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "==> building the libsrtp2 harness"
"${CC:-cc}" -O2 -o "$tmp/bench" benches/libsrtp2/bench.c -lsrtp2

echo "==> cargo bench -p benches --bench srtp"
cargo bench -p benches --bench srtp 2>&1 | grep -E '^srtp/|time:' || true
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

echo "==> libsrtp2 $(dpkg-query -W -f '${Version}' libsrtp2-1 2>/dev/null || echo '(version unknown)')"
"$tmp/bench" "$seconds" | tee "$tmp/c.txt"

echo
python3 - "$target_dir/criterion/srtp" "$tmp/c.txt" <<'PY'
import json, os, sys
crit, c_file = sys.argv[1], sys.argv[2]
print(f"{'case':<42} {'ours ns':>9} {'libsrtp2 ns':>12} {'ratio':>7}")
for line in open(c_file):
    op, suite, size, theirs = line.split()
    path = os.path.join(crit, f"{op}_{suite}", size, "new", "estimates.json")
    try:
        ours = json.load(open(path))["median"]["point_estimate"]
    except OSError:
        print(f"{op} {suite} {size}: no criterion estimate at {path}")
        continue
    print(f"{op + ' ' + suite + ' ' + size:<42} {ours:>9.1f} {float(theirs):>12.1f} {ours / float(theirs):>7.2f}")
PY
echo
echo "ratio = ours / libsrtp2 per packet (medians); RUSTFLAGS='${RUSTFLAGS:-}'."
echo "The machine may be shared: run it twice and compare before trusting a figure."
