//! Reconnect delays: exponential backoff with full jitter (AWS Architecture Blog, "Exponential
//! Backoff And Jitter"): delay = random(0, min(cap, base × 2^attempt)).
//!
//! The random source is a seeded xorshift, so tests are deterministic and the firmware seeds it
//! from the hardware entropy source; devices of a fleet then do not reconnect in lockstep after
//! a broker restart.

use crate::error::Error;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first ceiling, in milliseconds.
    pub base_ms: u32,
    /// The largest ceiling, in milliseconds.
    pub cap_ms: u32,
    /// A connection that lasted this long resets the backoff.
    pub stable_after_ms: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self { base_ms: 1_000, cap_ms: 60_000, stable_after_ms: 30_000 }
    }
}

/// Reconnect policy state.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A policy seeded with `seed` (any value; zero is replaced).
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Self { config, attempt: 0, rng: seed | 1 }
    }

    /// Failed attempts since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The ceiling of the next delay, without jitter.
    pub fn ceiling_ms(&self) -> u32 {
        let shift = self.attempt.min(31);
        let ceiling = u64::from(self.config.base_ms) << shift;
        ceiling.min(u64::from(self.config.cap_ms)) as u32
    }

    /// How long to wait before reconnecting after `error`, or `None` when reconnecting cannot
    /// help (the error is not recoverable). Reads nothing of the error but that.
    pub fn next_delay_ms(&mut self, error: &Error) -> Option<u32> {
        if !error.is_recoverable() {
            return None;
        }
        let ceiling = self.ceiling_ms();
        self.attempt = self.attempt.saturating_add(1);
        let delay = self.next_random() % (u64::from(ceiling) + 1);
        Some(delay as u32)
    }

    /// Call when a connection ends after lasting `connected_ms`: a stable one resets the
    /// backoff, a short one does not (a broker that accepts and drops at once must not be
    /// hammered).
    pub fn connection_ended(&mut self, connected_ms: u64) {
        if connected_ms >= u64::from(self.config.stable_after_ms) {
            self.attempt = 0;
        }
    }

    /// Starts over (e.g. the configuration changed).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ConfigError, TransportError};

    const LINK_DOWN: Error = Error::Transport(TransportError::Connect);

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let config = BackoffConfig { base_ms: 100, cap_ms: 1_000, stable_after_ms: 10 };
        let mut backoff = Backoff::new(config, 7);
        let mut ceilings = std::vec::Vec::new();
        for _ in 0..6 {
            ceilings.push(backoff.ceiling_ms());
            backoff.next_delay_ms(&LINK_DOWN);
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn delays_stay_within_the_ceiling_and_vary() {
        let mut backoff = Backoff::new(BackoffConfig::default(), 42);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let ceiling = backoff.ceiling_ms();
            let delay = backoff.next_delay_ms(&LINK_DOWN).unwrap();
            assert!(delay <= ceiling);
            seen.insert(delay);
        }
        assert!(seen.len() > 100, "full jitter spreads delays: {}", seen.len());
    }

    #[test]
    fn many_attempts_never_overflow() {
        let mut backoff = Backoff::new(BackoffConfig::default(), 1);
        for _ in 0..10_000 {
            assert!(backoff.next_delay_ms(&LINK_DOWN).unwrap() <= 60_000);
        }
    }

    #[test]
    fn same_seed_same_delays_other_seed_other_delays() {
        let run = |seed| {
            let mut b = Backoff::new(BackoffConfig::default(), seed);
            (0..8).map(|_| b.next_delay_ms(&LINK_DOWN).unwrap()).collect::<std::vec::Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn unrecoverable_errors_get_no_delay() {
        let mut backoff = Backoff::new(BackoffConfig::default(), 1);
        assert_eq!(backoff.next_delay_ms(&Error::Config(ConfigError::InvalidClientId)), None);
        assert_eq!(backoff.attempt(), 0);
    }

    #[test]
    fn only_a_stable_connection_resets_the_backoff() {
        let config = BackoffConfig { base_ms: 100, cap_ms: 10_000, stable_after_ms: 5_000 };
        let mut backoff = Backoff::new(config, 3);
        for _ in 0..4 {
            backoff.next_delay_ms(&LINK_DOWN);
        }
        backoff.connection_ended(100);
        assert_eq!(backoff.ceiling_ms(), 1_600);
        backoff.connection_ended(5_000);
        assert_eq!(backoff.ceiling_ms(), 100);
    }
}
