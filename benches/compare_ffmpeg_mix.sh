#!/usr/bin/env bash
# The audio mixer against ffmpeg's amix, in one run on the same files:
# generates 10 s mono 48 kHz Ogg Opus inputs with ffmpeg (libopus, VoIP,
# 20 ms frames) into a temporary folder, then for each case times
#
#   ffmpeg (one thread): amix=inputs=N:normalize=0, 8 kHz, PCMU
#   ours (one thread):   mix_to_pcmu (benches/src/bin): per 20 ms tick decode
#                        every input once (DTX-sized packets skipped), mix,
#                        one listener hearing everyone, 48 -> 8 kHz, µ-law
#
# as whole processes (start-up, reading and demuxing included on both
# sides), best wall time of RUNS, and prints output frames (20 ms) per
# second for each and the ratio ours/ffmpeg. Cases:
#
#   A  9 inputs, all speaking            aim: ratio >= 2
#   B  50 inputs, all speaking           aim: ratio >= 2
#   C  50 inputs, 3 speaking, 47 silent  aim: ratio >= 20
#
#   benches/compare_ffmpeg_mix.sh [RUNS]
#
# Needs ffmpeg (Debian package ffmpeg, with libopus) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v ffmpeg >/dev/null || { echo "ffmpeg missing: apt-get install ffmpeg" >&2; exit 1; }
[[ "$(ffmpeg -hide_banner -encoders 2>/dev/null)" == *libopus* ]] || { echo "ffmpeg has no libopus encoder" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed to time the runs" >&2; exit 1; }
runs="${1:-5}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "==> cargo build --release -p benches --bin mix_to_pcmu"
cargo build --release -p benches --bin mix_to_pcmu 2>&1 | tail -1
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
ours="$target_dir/release/mix_to_pcmu"

# Speech-like inputs: a vibrato fundamental (100 to 247 Hz) with harmonics,
# a syllable-rate envelope and some noise, different for each input; 32
# kbit/s as WebRTC sends voice. Silent inputs: digital silence. Debian 12's
# ffmpeg (5.1) has no -dtx option for libopus; at its default bitrate libopus
# codes digital silence in 3-byte packets anyway, as DTX would (at 32 kbit/s
# it would pick hybrid mode and spend 35 bytes on it).
opus=(-c:a libopus -application voip -frame_duration 20 -vbr on)
dtx=()
if [[ "$(ffmpeg -hide_banner -h encoder=libopus 2>/dev/null)" == *-dtx* ]]; then dtx=(-dtx 1); fi
echo "==> generating 50 speech and 47 silent inputs in $tmp (dtx option: ${dtx[*]:-not in this ffmpeg})"
speech() {
    local k="$1" tmp="$2"
    shift 2
    local f0=$((100 + 3 * k))
    local expr="0.08*(0.65+0.35*sin(2*PI*(3+0.1*$k)*t+$k))*(sin(2*PI*$f0*t+2*sin(2*PI*5*t))"
    expr+="+0.6*sin(4*PI*$f0*t+4*sin(2*PI*5*t))+0.4*sin(6*PI*$f0*t+6*sin(2*PI*5*t))+0.25*sin(10*PI*$f0*t+10*sin(2*PI*5*t)))"
    expr+="+0.01*(2*random(0)-1)"
    ffmpeg -hide_banner -loglevel error -y -f lavfi -i "aevalsrc=exprs='$expr':s=48000:d=10" \
        "$@" -b:a 32k "$tmp/speech$k.ogg"
}
export -f speech
seq 0 49 | xargs -P 2 -I{} bash -c 'speech "$@"' _ {} "$tmp" "${opus[@]}" "${dtx[@]}"
ffmpeg -hide_banner -loglevel error -y -f lavfi -i anullsrc=r=48000:cl=mono -t 10 "${opus[@]}" "${dtx[@]}" \
    "$tmp/silence0.ogg"
for k in $(seq 1 46); do cp "$tmp/silence0.ogg" "$tmp/silence$k.ogg"; done

files() { # files FIRST_SPEECH_COUNT SILENT_COUNT
    for k in $(seq 0 $(($1 - 1))); do echo "$tmp/speech$k.ogg"; done
    for k in $(seq 0 $(($2 - 1))); do echo "$tmp/silence$k.ogg"; done
}

echo "==> ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3), $runs runs per case, best wall time"
python3 - "$tmp" "$ours" "$runs" "$(files 9 0 | tr '\n' ' ')" "$(files 50 0 | tr '\n' ' ')" \
    "$(files 3 47 | tr '\n' ' ')" <<'PY'
import os, re, subprocess, sys, time

tmp, ours, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
cases = [("A", "9 speaking", sys.argv[4].split(), 2), ("B", "50 speaking", sys.argv[5].split(), 2),
         ("C", "50, 3 speaking", sys.argv[6].split(), 20)]

def timed(cmd):
    """Best wall time and the CPU time (user + sys) of that run."""
    best = None
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        out, err = p.stdout.read().decode(), p.stderr.read().decode()
        p.stdout.close(); p.stderr.close()
        if status != 0:
            sys.exit(f"{cmd[0]} failed: {err}")
        if best is None or wall < best[0]:
            best = (wall, usage.ru_utime + usage.ru_stime, out)
    return best

rows = []
for name, what, files, aim in cases:
    n = len(files)
    out_file = os.path.join(tmp, f"ffmpeg_{name}.ul")
    ff = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-filter_threads", "1"]
    for f in files:
        ff += ["-threads", "1", "-i", f]
    ff += ["-filter_complex", f"amix=inputs={n}:normalize=0", "-ar", "8000", "-ac", "1", "-c:a", "pcm_mulaw",
           "-threads", "1", "-f", "mulaw", out_file]
    ff_wall, ff_cpu, _ = timed(ff)
    ff_frames = os.path.getsize(out_file) / 160
    our_wall, our_cpu, out = timed([ours] + files)
    fields = dict(re.findall(r"(\w+)=(\S+)", out))
    our_frames = int(fields["ticks"])
    # The loop alone (files in memory), five passes, and where its time goes.
    loop = subprocess.run([ours, "--passes", "5", "--split"] + files, capture_output=True, text=True, check=True)
    lf = dict(re.findall(r"(\w+)=(\S+)", loop.stdout.splitlines()[0]))
    split = re.findall(r"(\w+)=(\S+)", loop.stdout.splitlines()[1])
    us = {k: float(v) for k, v in split[:4]}
    rows.append((name, what, ff_frames / ff_wall, ff_cpu, our_frames / our_wall, our_cpu, aim, lf, us,
                 fields["decoded"], fields["skipped"]))

print()
print(f"{'case':<22} {'ffmpeg fr/s':>11} {'ours fr/s':>10} {'ratio':>7} {'aim':>5}   "
      f"{'cpu s ffmpeg/ours':>17}   {'ours loop fr/s':>14}")
for name, what, ff, ff_cpu, us_, our_cpu, aim, lf, _, _, _ in rows:
    ratio = us_ / ff
    mark = "ok" if ratio >= aim else "MISSED"
    print(f"{name + ' ' + what:<22} {ff:>11.0f} {us_:>10.0f} {ratio:>6.1f}x {aim:>4}x {mark:<6} "
          f"{ff_cpu:>6.2f} / {our_cpu:<6.2f}   {float(lf['frames_per_s']):>14.0f}")
print()
print("ours, time per output frame by stage (loop alone, 5 passes):")
for name, what, *_, us, decoded, skipped in rows:
    total = sum(us.values())
    parts = "  ".join(f"{k} {v:7.1f} us ({100 * v / total:4.1f}%)" for k, v in us.items())
    print(f"  {name}: {parts}   [packets decoded {decoded}, skipped as DTX {skipped}]")
PY
echo
echo "ratio = ours / ffmpeg in output frames per second (whole processes, best of $runs wall times)."
echo "The machine may be shared: run it twice and compare before trusting a figure."
