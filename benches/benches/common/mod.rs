//! What `criterion_group!`/`criterion_main!` expand to, written out once for the benches that
//! share these settings: the macros' generated `pub fn` has no doc comment and trips
//! `missing_docs`.

use criterion::Criterion;
use std::time::Duration;

/// Runs `groups` with 3 s of measurement and 1 s of warm-up each (command-line options win),
/// then prints criterion's summary.
pub fn run(groups: &[fn(&mut Criterion)]) {
    let mut criterion = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    for group in groups {
        group(&mut criterion);
    }
    criterion.final_summary();
}
