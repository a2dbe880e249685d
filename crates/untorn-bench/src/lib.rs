//! What the benchmarks of this crate share: one copy of the statistics, the formatting of sizes,
//! times and ratios, the description of the machine and the file system printed in each header,
//! the interleaved schedule of contenders (a fresh random order each round), the crowds of
//! processes started together, and the table of ratios over repeated runs (each beside its
//! floor, with the range), so that every benchmark measures and reports the same way and a fix
//! to one of these reaches all of them.
//!
//! The binaries (`src/bin/`: `write`, `append`, `backup`, `counter`, `txn`, `spawn`, and the
//! minimal programs `spawn` compares the CLI with) `use untorn_bench::...`; the library itself
//! measures nothing.

use std::error::Error;

pub mod cmdline;
pub mod crowd;
pub mod report;
pub mod run;
pub mod stats;
pub mod units;

/// The result of the benchmarks' fallible steps: any error ends the run with its message.
pub type Res<T> = Result<T, Box<dyn Error>>;
