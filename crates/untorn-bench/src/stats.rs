//! Small statistics: medians, percentiles and bootstrap intervals of ratios of medians, with a
//! tiny generator instead of a dependency.

/// xorshift64*: reproducible data, shuffles and bootstrap resamples, no dependency. The state is
/// public so that a caller can keep it elsewhere between uses (a `Cell`) and seed it at will.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits. `#[inline]`: the `untorn-bench` ablation calls it inside a timed
    /// write, where a call across crates should cost no more than it did in the binary.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0; the modulo bias is negligible for the small `n` used here).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Fisher–Yates shuffle: a fresh random order of the contenders each round.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// The median (the mean of the two middle values for an even count; NaN for none): the
/// benchmarks report medians, which one slow outlier (a journal commit of a neighbour) does not
/// move.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// The `p` quantile (0.0–1.0) by nearest rank, NaN for none: for the spreads (p10–p90) and the
/// ends of the bootstrap intervals.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[((s.len() - 1) as f64 * p).round() as usize]
}

/// 95% bootstrap interval of `median(a) / median(b)` from `resamples` resamples of the rounds,
/// each round's pair kept together (so that noise both sides shared in a round cancels out);
/// `None` with fewer than 5 rounds, too few to resample. The benchmarks differ in `resamples`
/// (`untorn-bench` 1000, `append` and `backup` 2000); it changes how many numbers `rng` draws.
pub fn ratio_ci(a: &[f64], b: &[f64], rng: &mut Rng, resamples: usize) -> Option<(f64, f64)> {
    let n = a.len().min(b.len());
    if n < 5 {
        return None;
    }
    let mut ratios = Vec::with_capacity(resamples);
    let (mut ra, mut rb) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..resamples {
        for i in 0..n {
            let j = rng.below(n);
            ra[i] = a[j];
            rb[i] = b[j];
        }
        ratios.push(median(&ra) / median(&rb));
    }
    Some((percentile(&ratios, 0.025), percentile(&ratios, 0.975)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(percentile(&[], 0.5).is_nan());
        let v: Vec<f64> = (0..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.1), 1.0);
        assert_eq!(percentile(&v, 0.9), 9.0);
    }

    #[test]
    fn ratio_interval() {
        let mut rng = Rng(0x1234_5678);
        assert_eq!(ratio_ci(&[1.0; 4], &[1.0; 4], &mut rng, 100), None);
        let a: Vec<f64> = (0..50).map(|i| 200.0 + f64::from(i % 7)).collect();
        let b: Vec<f64> = (0..50).map(|i| 100.0 + f64::from(i % 5)).collect();
        let (lo, hi) = ratio_ci(&a, &b, &mut rng, 500).unwrap();
        assert!(lo <= hi && lo > 1.9 && hi < 2.1, "{lo} {hi}");
    }
}
