#!/usr/bin/env bash
# G.722 per 20 ms frame, ours against ffmpeg's g722 encoder and decoder, in
# one run on the same machine and the same signal: runs
# `cargo bench -p benches --bench g722`, then ffmpeg with -benchmark on the
# 2 s reference signal of crates/media-mixer/tests/data/g722 repeated 150
# times (300 s, 15 000 frames) and once (2 s); the difference of the two user
# CPU times, divided by the 14 900 extra frames, removes ffmpeg's start-up.
# Prints µs/frame for each and the ratio ours/ffmpeg (below 1: we are faster).
# ffmpeg's figure also covers its (raw, in-memory) demuxing and muxing.
#
#   benches/compare_ffmpeg_g722.sh [REPEATS]
#
# Needs the Debian package ffmpeg and python3 (to read criterion's estimates).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v ffmpeg >/dev/null || { echo "ffmpeg missing: apt-get install ffmpeg" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed to read criterion's estimates" >&2; exit 1; }
repeats="${1:-150}"
data=crates/media-mixer/tests/data/g722
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for _ in $(seq "$repeats"); do cat "$data/input.raw"; done >"$tmp/long.raw"
for _ in $(seq "$repeats"); do cat "$data/ffmpeg.g722"; done >"$tmp/long.g722"

echo "==> cargo bench -p benches --bench g722"
cargo bench -p benches --bench g722 2>&1 | grep -E '^g722/|time:' || true
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

# User CPU seconds of one ffmpeg run (-benchmark prints "bench: utime=...s").
utime() {
    ffmpeg -hide_banner -nostdin -benchmark "$@" -y /dev/null 2>&1 | sed -n 's/^bench: utime=\([0-9.]*\)s.*/\1/p'
}
enc=(-f s16le -ar 16000 -ac 1)
dec=(-f g722)
echo "==> ffmpeg $(ffmpeg -version | sed -n '1s/ffmpeg version \([^ ]*\).*/\1/p')"
enc_short="$(utime "${enc[@]}" -i "$data/input.raw" -f g722 -acodec g722)"
enc_long="$(utime "${enc[@]}" -i "$tmp/long.raw" -f g722 -acodec g722)"
dec_short="$(utime "${dec[@]}" -i "$data/ffmpeg.g722" -f s16le -acodec pcm_s16le)"
dec_long="$(utime "${dec[@]}" -i "$tmp/long.g722" -f s16le -acodec pcm_s16le)"

echo
python3 - "$target_dir/criterion/g722" "$repeats" "$enc_short" "$enc_long" "$dec_short" "$dec_long" <<'PY'
import json, os, sys
crit, repeats = sys.argv[1], int(sys.argv[2])
enc_short, enc_long, dec_short, dec_long = map(float, sys.argv[3:7])
extra_frames = (repeats - 1) * 100
theirs = {
    "encode_20ms": (enc_long - enc_short) / extra_frames * 1e6,
    "decode_20ms": (dec_long - dec_short) / extra_frames * 1e6,
}
print(f"{'case':<14} {'ours µs':>9} {'ffmpeg µs':>10} {'ratio':>7}")
for case, their in theirs.items():
    path = os.path.join(crit, case, "new", "estimates.json")
    try:
        ours = json.load(open(path))["median"]["point_estimate"] / 1000
    except OSError:
        print(f"{case}: no criterion estimate at {path}")
        continue
    print(f"{case:<14} {ours:>9.2f} {their:>10.2f} {ours / their:>7.2f}")
PY
echo
echo "ratio = ours / ffmpeg per 20 ms frame (criterion median; ffmpeg's user time, start-up removed)."
echo "The machine may be shared: run it twice and compare before trusting a figure."
