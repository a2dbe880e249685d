//! Sizes and durations: parsed from the options, printed in the tables.

use crate::Res;

/// One KiB, in bytes.
pub const KIB: usize = 1024;
/// One MiB, in bytes.
pub const MIB: usize = 1024 * 1024;

/// A size as the options take it (`--sizes 1K,64M`, a chunk size): a whole number of bytes with
/// an optional binary suffix `K`, `M` or `G` (either case).
pub fn parse_size(s: &str) -> Res<usize> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], KIB),
        Some((i, 'M' | 'm')) => (&s[..i], MIB),
        Some((i, 'G' | 'g')) => (&s[..i], 1024 * MIB),
        _ => (s, 1),
    };
    Ok(num
        .parse::<usize>()
        .map_err(|e| format!("bad size '{s}': {e}"))?
        * mul)
}

/// `n` bytes in the largest binary unit that divides it exactly (`64 MiB`, `1 KiB`, `100 B`), so
/// that a table's rows read as the sizes that were asked for.
pub fn size_label(n: usize) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} B")
    }
}

/// A duration in nanoseconds as µs, ms or s with two or three significant digits: more would be
/// noise on a shared machine.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 10_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e6 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// A ratio with `digits` decimals, followed by its confidence interval `(lo–hi)` where there is
/// one (see [`crate::stats::ratio_ci`]), so that a reader sees at once whether it is decided.
pub fn fmt_ratio(r: f64, ci: Option<(f64, f64)>, digits: usize) -> String {
    match ci {
        Some((lo, hi)) => format!("{r:.digits$} ({lo:.digits$}–{hi:.digits$})"),
        None => format!("{r:.digits$}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip() {
        assert_eq!(parse_size("1K").unwrap(), KIB);
        assert_eq!(parse_size(" 64m ").unwrap(), 64 * MIB);
        assert_eq!(parse_size("2G").unwrap(), 2048 * MIB);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("1X").is_err());
        assert_eq!(size_label(64 * MIB), "64 MiB");
        assert_eq!(size_label(KIB), "1 KiB");
        assert_eq!(size_label(1536), "1536 B");
        assert_eq!(size_label(3 * KIB / 2 * 1024), "1536 KiB");
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_ns(1_234.0), "1.2 µs");
        assert_eq!(fmt_ns(123_456.0), "123 µs");
        assert_eq!(fmt_ns(12_345_678.0), "12.35 ms");
        assert_eq!(fmt_ns(2.5e9), "2.50 s");
        assert_eq!(fmt_ratio(1.2345, Some((1.1, 1.3)), 2), "1.23 (1.10–1.30)");
        assert_eq!(fmt_ratio(437.4, None, 0), "437");
    }
}
