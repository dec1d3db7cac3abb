#!/bin/sh
# Seeds the fuzz corpora with the RFC 4475 torture messages (and any
# saved fuzz regressions), plus a few pipelined streams for the framer.
# Run from anywhere; writes fuzz/corpus/<target>/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data="$here/../crates/sip-signaling/tests/data"
for target in parse_message stream_framer; do
    mkdir -p "$here/corpus/$target"
    cp "$data"/rfc4475/*.dat "$here/corpus/$target/"
    if [ -d "$data/fuzz-regressions" ]; then
        find "$data/fuzz-regressions" -type f ! -name '*.md' -exec cp {} "$here/corpus/$target/" \;
    fi
done
# Streams: keep-alives and several messages back to back.
s="$here/corpus/stream_framer"
{ printf '\r\n\r\n'; cat "$data/rfc4475/esc01.dat" "$data/rfc4475/mpart01.dat"; printf '\r\n'; cat "$data/rfc4475/wsinv.dat"; } > "$s/stream-pipelined"
cat "$data/rfc4475/dblreq.dat" "$data/rfc4475/clerr.dat" > "$s/stream-short-body"
cat "$data/rfc4475/mcl01.dat" "$data/rfc4475/ncl.dat" > "$s/stream-bad-length"
echo "seeded: $(ls "$here/corpus/parse_message" | wc -l) parse_message, $(ls "$s" | wc -l) stream_framer"
# SDP bodies from real peers.
mkdir -p "$here/corpus/sdp"
cp "$here"/../crates/sdp-negotiation/tests/data/*.sdp "$here/corpus/sdp/"
echo "seeded: $(ls "$here/corpus/sdp" | wc -l) sdp"
# Video and audio RTP from real encodings (a Rust program: it needs the encoders).
cargo run -q --manifest-path "$here/Cargo.toml" --bin seed_media -- "$here/corpus"
