//! The mixer comparison's "ours" side: reads N Ogg Opus files and runs the
//! conference pipeline (`benches::conference`) over them on one thread,
//! one 20 ms tick at a time, as `benches/compare_ffmpeg_mix.sh` times
//! ffmpeg's `amix` on the same files.
//!
//! ```text
//! mix_to_pcmu [--passes N] [--split] [--mix-rate HZ] FILE.ogg...
//! ```
//!
//! `--mix-rate` is the rate the inputs are decoded and mixed at: 8000 (the
//! default, what the gateway does when every listener takes a narrowband
//! codec: libopus decodes straight to 8 kHz and no resampler runs), 16000
//! or 48000 (decode and mix at that rate, then resample to 8 kHz).
//!
//! Prints one `key=value` line: output frames (ticks) per second over the
//! processing loop (files already in memory); with `--split`, a second
//! line with the time per tick of each stage, measured in a separate pass.

use benches::conference::{ticks, Conference, StageTimes};
use benches::ogg::opus_packets;
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Args {
    passes: usize,
    split: bool,
    mix_rate: u32,
    files: Vec<String>,
}

fn args() -> Result<Args, String> {
    let mut a = Args { passes: 1, split: false, mix_rate: 8_000, files: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--passes" => {
                let n = it.next().ok_or("--passes needs a number")?;
                a.passes = n.parse().map_err(|_| format!("--passes {n}: not a number"))?;
            }
            "--split" => a.split = true,
            "--mix-rate" => {
                let n = it.next().ok_or("--mix-rate needs a rate in Hz")?;
                a.mix_rate = n.parse().map_err(|_| format!("--mix-rate {n}: not a number"))?;
            }
            "-h" | "--help" => {
                return Err("usage: mix_to_pcmu [--passes N] [--split] [--mix-rate HZ] FILE.ogg...".into())
            }
            _ => a.files.push(arg),
        }
    }
    if a.files.is_empty() || a.passes == 0 {
        return Err("usage: mix_to_pcmu [--passes N] [--split] [--mix-rate HZ] FILE.ogg...".into());
    }
    Ok(a)
}

fn micros_per_tick(d: Duration, ticks: usize) -> f64 {
    d.as_secs_f64() * 1e6 / ticks.max(1) as f64
}

fn run(a: &Args) -> Result<(), String> {
    let t0 = Instant::now();
    let inputs = a
        .files
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).map_err(|e| format!("{f}: {e}"))?;
            opus_packets(&bytes).map_err(|e| format!("{f}: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let load = t0.elapsed();
    let n = ticks(&inputs);

    let mut conference = Conference::new(inputs.len(), a.mix_rate).map_err(|e| e.to_string())?;
    let t1 = Instant::now();
    let (ran, checksum) = benches::conference::run(&mut conference, &inputs, a.passes).map_err(|e| e.to_string())?;
    let elapsed = t1.elapsed();
    let (decoded, skipped) = conference.counts();
    println!(
        "inputs={} ticks={n} passes={} decoded={decoded} skipped={skipped} load_ms={:.1} loop_ms={:.1} \
         us_per_tick={:.1} frames_per_s={:.0} checksum={checksum:x}",
        inputs.len(),
        a.passes,
        load.as_secs_f64() * 1e3,
        elapsed.as_secs_f64() * 1e3,
        micros_per_tick(elapsed, ran),
        ran as f64 / elapsed.as_secs_f64(),
    );

    if a.split {
        let mut conference = Conference::new(inputs.len(), a.mix_rate).map_err(|e| e.to_string())?;
        let mut times = StageTimes::default();
        for _ in 0..a.passes {
            for t in 0..n {
                conference.tick_timed(inputs.iter().map(|p| p[t].as_slice()), &mut times).map_err(|e| e.to_string())?;
            }
        }
        let ran = n * a.passes;
        let total = times.total().as_secs_f64();
        let share = |d: Duration| 100.0 * d.as_secs_f64() / total;
        println!(
            "split_us_per_tick decode={:.2} mix={:.2} resample={:.2} encode={:.2} \
             split_percent decode={:.1} mix={:.1} resample={:.1} encode={:.1}",
            micros_per_tick(times.decode, ran),
            micros_per_tick(times.mix, ran),
            micros_per_tick(times.resample, ran),
            micros_per_tick(times.encode, ran),
            share(times.decode),
            share(times.mix),
            share(times.resample),
            share(times.encode),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match args().and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mix_to_pcmu: {e}");
            ExitCode::FAILURE
        }
    }
}
