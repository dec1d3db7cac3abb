#!/usr/bin/env bash
# The video grid against ffmpeg on the same inputs in the same run, one thread
# each: nine 640x360 H.264 streams -> decode -> 3x3 on 1280x720 -> H.264 or VP8.
# ffmpeg: xstack + libx264 ultrafast or libvpx realtime (the issue's references);
# ours: OpenH264 decode, our scaler's compose, OpenH264 or libvpx encode. Both
# sides encode at 2 Mbit/s (libvpx in CBR, as ours), and each side's PSNR of its
# output against its own composed canvas is printed, so the speeds are compared
# at a known quality. Both pinned to one core with taskset (ffmpeg starts a
# demuxer thread per input whatever -threads says); GRID_BENCH_CPU=N picks the
# core (0 by default). Each pipeline runs RUNS times, the runs of all of them
# alternating, and the best of each is kept (the machine is shared: the best
# run is the one least disturbed).
#
# Usage: compare_ffmpeg_grid.sh [FRAMES (300)] [RUNS (3)]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v ffmpeg >/dev/null || { echo "ffmpeg is missing: apt-get install ffmpeg" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset is missing: apt-get install util-linux" >&2; exit 1; }
frames=${1:-300}
runs=${2:-3}
pin=(taskset -c "${GRID_BENCH_CPU:-0}")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo build --release -q -p benches --bin grid_to_h264

inputs=()
for i in $(seq 0 8); do inputs+=(-threads 1 -f h264 -i "$dir/src$i.h264"); done
graph=""
for i in $(seq 0 8); do graph+="[$i:v]scale=426:240[v$i];"; done
graph+="[v0][v1][v2][v3][v4][v5][v6][v7][v8]xstack=inputs=9:layout=0_0|w0_0|w0+w1_0|0_h0|w0_h0|w0+w1_h0|0_h0+h3|w0_h0+h3|w0+w1_h0+h3[out]"
x264=(-c:v libx264 -preset ultrafast -b:v 2M -maxrate 2M -bufsize 2M)
vpx=(-c:v libvpx -deadline realtime -cpu-used 8 -b:v 2M -minrate 2M -maxrate 2M)

# Frames per second of one ffmpeg run of the graph with these output options.
run_ffmpeg() {
    local start end
    start=$(date +%s.%N)
    "${pin[@]}" ffmpeg -hide_banner -loglevel error -filter_threads 1 -filter_complex_threads 1 "${inputs[@]}" \
        -filter_complex "$graph" -map "[out]" "$@" -threads 1 -f null -
    end=$(date +%s.%N)
    echo "$frames / ($end - $start)" | bc -l
}
# Frames per second of the nine decodes alone.
decode_only() {
    local start end maps=()
    for i in $(seq 0 8); do maps+=(-map "$i:v" -c:v rawvideo -f null -); done
    start=$(date +%s.%N)
    "${pin[@]}" ffmpeg -hide_banner -loglevel error "${inputs[@]}" "${maps[@]}"
    end=$(date +%s.%N)
    echo "$frames / ($end - $start)" | bc -l
}
fps() { echo "$1" | sed -E 's/.*= ([0-9.]+) fps.*/\1/'; }
# The larger of two rates.
best() { if [ -z "$1" ] || (($(echo "$2 > $1" | bc -l))); then echo "$2"; else echo "$1"; fi; }

ours="" ours_vp8="" ff_h264="" ff_vp8="" ff_raw="" ff_dec=""
for r in $(seq 1 "$runs"); do
    # Ours writes the nine source files (the same every time) before it times anything.
    line=$("${pin[@]}" ./target/release/grid_to_h264 "$dir" "$frames")
    if [ -z "$ours" ] || (($(echo "$(fps "$line") > $(fps "$ours")" | bc -l))); then ours=$line; fi
    line=$("${pin[@]}" ./target/release/grid_to_h264 "$dir" "$frames" vp8)
    if [ -z "$ours_vp8" ] || (($(echo "$(fps "$line") > $(fps "$ours_vp8")" | bc -l))); then ours_vp8=$line; fi
    ff_h264=$(best "$ff_h264" "$(run_ffmpeg "${x264[@]}")")
    ff_vp8=$(best "$ff_vp8" "$(run_ffmpeg "${vpx[@]}")")
    # Where ffmpeg's time goes: the same graph with no encoder (raw frames thrown
    # away), and the nine decodes alone.
    ff_raw=$(best "$ff_raw" "$(run_ffmpeg -c:v rawvideo)")
    ff_dec=$(best "$ff_dec" "$(decode_only)")
done

# Quality and bitrate of ffmpeg's output, from an untimed run with the encoder's
# own PSNR (of its output against the canvas it was given).
quality() {
    local out=$1 log psnr
    shift
    log=$("${pin[@]}" ffmpeg -hide_banner -loglevel info -stats "${inputs[@]}" -filter_complex "$graph" \
        -map "[out]" -threads 1 "$@" -flags +psnr -y "$out" 2>&1 | tr '\r' '\n')
    psnr=$(echo "$log" | grep -oE "(PSNR Mean Y:|LPSNR=Y:)[0-9.]+" | tail -1 | grep -oE "[0-9.]+$")
    printf "%.0f kbit/s, PSNR(Y) %s dB" "$(echo "$(stat -c %s "$out") * 8 * 30 / $frames / 1000" | bc -l)" "${psnr:-n/a}"
}
q_h264=$(quality "$dir/ff.h264" "${x264[@]}" -f h264)
q_vp8=$(quality "$dir/ff.ivf" "${vpx[@]}" -f ivf)

echo "best of $runs alternating runs, $frames frames each:"
echo "$ours"
echo "$ours_vp8"
printf "ffmpeg H.264 (xstack + libx264 ultrafast, 1 thread): %.1f fps; %s; ratio ours / ffmpeg: %.2f\n" "$ff_h264" "$q_h264" "$(echo "$(fps "$ours") / $ff_h264" | bc -l)"
printf "ffmpeg VP8 (xstack + libvpx realtime, 1 thread): %.1f fps; %s; ratio ours / ffmpeg: %.2f\n" "$ff_vp8" "$q_vp8" "$(echo "$(fps "$ours_vp8") / $ff_vp8" | bc -l)"
# The encoders' share bounds what any pipeline sharing them can gain.
ff_raw_ms=$(echo "1000 / $ff_raw" | bc -l)
ff_dec_ms=$(echo "1000 / $ff_dec" | bc -l)
printf "ffmpeg per frame: decode %.2f ms, scale + xstack %.2f ms, libx264 %.2f ms, libvpx %.2f ms (from its best runs with no encoder and of the decodes alone)\n" \
    "$ff_dec_ms" "$(echo "$ff_raw_ms - $ff_dec_ms" | bc -l)" "$(echo "1000 / $ff_h264 - $ff_raw_ms" | bc -l)" \
    "$(echo "1000 / $ff_vp8 - $ff_raw_ms" | bc -l)"
