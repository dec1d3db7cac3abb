#!/usr/bin/env bash
# The audio mixer against ffmpeg's amix, in one run on the same files:
# generates 10 s mono 48 kHz Ogg Opus inputs with ffmpeg (libopus, VoIP,
# 20 ms frames) into a temporary folder, then for each case times
#
#   ffmpeg (one thread): amix=inputs=N:normalize=0, 8 kHz, PCMU
#   ours (one thread):   mix_to_pcmu (benches/src/bin): per 20 ms tick decode
#                        every input once straight to 8 kHz (DTX-sized packets
#                        skipped), mix at 8 kHz as the gateway does for a
#                        session whose calls all take G.711, one listener
#                        hearing everyone, µ-law
#
# as whole processes (start-up, reading and demuxing included on both
# sides), both pinned to one core with taskset (ffmpeg 5.1 starts a demuxer
# thread per input whatever -threads says, so unpinned it uses more than
# one core), best wall time of RUNS, and prints output frames (20 ms) per
# second for each and the ratio ours/ffmpeg. Cases:
#
#   A  9 inputs, all speaking            aim: ratio >= 2
#   B  50 inputs, all speaking           aim: ratio >= 2
#   C  50 inputs, 3 speaking, 47 silent  aim: ratio >= 20
#
#   benches/compare_ffmpeg_mix.sh [RUNS]     (MIX_BENCH_CPU=N picks the core, 0 by default)
#
# Needs ffmpeg (Debian package ffmpeg, with libopus), taskset (util-linux)
# and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v ffmpeg >/dev/null || { echo "ffmpeg missing: apt-get install ffmpeg" >&2; exit 1; }
[[ "$(ffmpeg -hide_banner -encoders 2>/dev/null)" == *libopus* ]] || { echo "ffmpeg has no libopus encoder" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed to time the runs" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset missing: apt-get install util-linux" >&2; exit 1; }
cpu="${MIX_BENCH_CPU:-0}"
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

echo "==> ffmpeg $(ffmpeg -version | head -1 | cut -d' ' -f3), $runs runs per case, best wall time, both on core $cpu"
python3 - "$tmp" "$ours" "$runs" "$cpu" "$(files 9 0 | tr '\n' ' ')" "$(files 50 0 | tr '\n' ' ')" \
    "$(files 3 47 | tr '\n' ' ')" <<'PY'
import os, re, resource, subprocess, sys, time

tmp, ours, runs, cpu = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
cases = [("A", "9 speaking", sys.argv[5].split(), 2), ("B", "50 speaking", sys.argv[6].split(), 2),
         ("C", "50, 3 speaking", sys.argv[7].split(), 20)]
pin = ["taskset", "-c", cpu]

def once(cmd):
    """Wall time, CPU time (user + sys) and standard output of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} ... failed: {err.decode()}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, out.decode()

def best(cmds):
    """Runs the commands in turn, `runs` rounds (so both sides see the same
    load), and keeps each one's best wall and best CPU time."""
    results = [[float("inf"), float("inf"), ""] for _ in cmds]
    for _ in range(runs):
        for cmd, r in zip(cmds, results):
            wall, cpu, out = once(cmd)
            r[0], r[1], r[2] = min(r[0], wall), min(r[1], cpu), out
    return results

rows = []
for name, what, files, aim in cases:
    n = len(files)
    out_file = os.path.join(tmp, f"ffmpeg_{name}.ul")
    ff = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-filter_threads", "1"]
    for f in files:
        ff += ["-threads", "1", "-i", f]
    ff += ["-filter_complex", f"amix=inputs={n}:normalize=0", "-ar", "8000", "-ac", "1", "-c:a", "pcm_mulaw",
           "-threads", "1", "-f", "mulaw", out_file]
    # The third command, ffmpeg free to spread its demuxer threads, is for reference only.
    (ff_wall, ff_cpu, _), (our_wall, our_cpu, out), (ff_free_wall, _, _) = best([pin + ff, pin + [ours] + files, ff])
    ff_frames = os.path.getsize(out_file) / 160
    our_frames = int(dict(re.findall(r"(\w+)=(\S+)", out))["ticks"])
    # The loop alone (files in memory), five passes, and where its time goes.
    loop = subprocess.run(pin + [ours, "--passes", "5", "--split"] + files, capture_output=True, text=True, check=True)
    lf = dict(re.findall(r"(\w+)=(\S+)", loop.stdout.splitlines()[0]))
    # For reference: the same loop decoding and mixing at 48 kHz (what a session with an Opus or
    # wideband call does), resampled to 8 kHz.
    wide = subprocess.run(pin + [ours, "--passes", "2", "--mix-rate", "48000"] + files, capture_output=True, text=True,
                          check=True)
    lf48 = dict(re.findall(r"(\w+)=(\S+)", wide.stdout.splitlines()[0]))
    us = {k: float(v) for k, v in re.findall(r"(\w+)=(\S+)", loop.stdout.splitlines()[1])[:4]}
    rows.append(dict(name=f"{name} {what}", ff=ff_frames / ff_wall, ours=our_frames / our_wall,
                     cpu_ratio=(our_frames / our_cpu) / (ff_frames / ff_cpu), ff_cpu=ff_cpu, our_cpu=our_cpu,
                     aim=aim, loop=float(lf["frames_per_s"]), loop48=float(lf48["frames_per_s"]), ff_free=ff_frames / ff_free_wall, us=us,
                     decoded=lf["decoded"], skipped=lf["skipped"], key=name))

print()
print(f"{'case':<22} {'ffmpeg fr/s':>11} {'ours fr/s':>10} {'ratio':>8} {'aim':>4}         "
      f"{'CPU s ffmpeg / ours':>19} {'CPU ratio':>9}   {'ours loop fr/s':>14}   {'loop at 48 kHz':>14}   "
      f"{'ffmpeg unpinned fr/s':>20}")
for r in rows:
    ratio = r["ours"] / r["ff"]
    mark = "met" if ratio >= r["aim"] else "MISSED"
    print(f"{r['name']:<22} {r['ff']:>11.0f} {r['ours']:>10.0f} {ratio:>7.2f}x {r['aim']:>3}x {mark:<6}   "
          f"{r['ff_cpu']:>8.3f} / {r['our_cpu']:<8.3f} {r['cpu_ratio']:>8.2f}x   {r['loop']:>14.0f}   {r['loop48']:>14.0f}   "
          f"{r['ff_free']:>20.0f}")
print()
print("ours, time per output frame by stage (loop alone, 5 passes):")
for r in rows:
    total = sum(r["us"].values())
    parts = "  ".join(f"{k} {v:7.1f} us ({100 * v / total:4.1f}%)" for k, v in r["us"].items())
    print(f"  {r['key']}: {parts}   [packets decoded {r['decoded']}, skipped as DTX {r['skipped']}]")
PY
echo
echo "ratio = ours / ffmpeg in output frames per second: whole processes on one core, best of $runs wall times,"
echo "runs alternating between the two; CPU ratio: the same from the best user + sys times."
echo "The machine may be shared: run it twice and compare before trusting a figure."
