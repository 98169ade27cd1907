//! Reconnect delays: exponential backoff with full jitter (AWS Architecture Blog, "Exponential
//! Backoff And Jitter"): delay = random(0, min(cap, base × 2^attempt)).
//!
//! The random source is a seeded xorshift, so tests are deterministic and the firmware seeds it
//! from the hardware entropy source; devices of a fleet then do not reconnect in lockstep after
//! a broker restart.
//!
//! Nothing stops reconnection for good. A refusal that needs a person ([`Recovery::NeedsAttention`]:
//! bad credentials, not authorized, a certificate refused) is retried on a slower schedule that
//! starts at the usual cap and doubles up to `attention_cap_ms` (an hour by default), with
//! "equal jitter" (at least half the ceiling), so a misconfigured fleet neither hammers the
//! broker nor stays stranded after the broker's side is fixed. New credentials [`Backoff::reset`].

use crate::error::Recovery;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first ceiling, in milliseconds.
    pub base_ms: u32,
    /// The largest ceiling, in milliseconds.
    pub cap_ms: u32,
    /// A connection that lasted this long resets the backoff.
    pub stable_after_ms: u32,
    /// The largest ceiling after refusals that need a person, in milliseconds.
    pub attention_cap_ms: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base_ms: 1_000,
            cap_ms: 60_000,
            stable_after_ms: 30_000,
            attention_cap_ms: 3_600_000,
        }
    }
}

/// Reconnect policy state.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    /// Refusals that need a person, in a row.
    refusals: u32,
    rng: u64,
}

impl Backoff {
    /// A policy seeded with `seed` (any value; zero is replaced).
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Self {
            config,
            attempt: 0,
            refusals: 0,
            rng: seed | 1,
        }
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

    /// The ceiling of the next delay after a fault that goes away by itself, without jitter.
    pub fn ceiling_ms(&self) -> u32 {
        let shift = self.attempt.min(31);
        let ceiling = u64::from(self.config.base_ms) << shift;
        ceiling.min(u64::from(self.config.cap_ms)) as u32
    }

    /// The ceiling of the next delay after a refusal that needs a person: the usual cap,
    /// doubled per refusal in a row, up to the attention cap (never below the usual cap).
    pub fn attention_ceiling_ms(&self) -> u32 {
        let shift = self.refusals.min(31);
        let ceiling = u64::from(self.config.cap_ms) << shift;
        let cap = self.config.attention_cap_ms.max(self.config.cap_ms);
        ceiling.min(u64::from(cap)) as u32
    }

    /// How long to wait before reconnecting after an error that `recovery` describes. There
    /// is always a next attempt.
    pub fn next_delay_ms(&mut self, recovery: Recovery) -> u32 {
        match recovery {
            Recovery::Retry => {
                let ceiling = u64::from(self.ceiling_ms());
                self.attempt = self.attempt.saturating_add(1);
                (self.next_random() % (ceiling + 1)) as u32
            }
            Recovery::NeedsAttention => {
                let ceiling = u64::from(self.attention_ceiling_ms());
                self.refusals = self.refusals.saturating_add(1);
                let half = ceiling / 2;
                (half + self.next_random() % (ceiling - half + 1)) as u32
            }
        }
    }

    /// Call when a connection ends after lasting `connected_ms`: a stable one resets the
    /// backoff, a short one does not (a broker that accepts and drops at once must not be
    /// hammered).
    pub fn connection_ended(&mut self, connected_ms: u64) {
        if connected_ms >= u64::from(self.config.stable_after_ms) {
            self.reset();
        }
    }

    /// Call when the broker accepted the connection (CONNACK 0): refusals are over.
    pub fn accepted(&mut self) {
        self.refusals = 0;
    }

    /// Starts over (e.g. new credentials were committed).
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.refusals = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK_DOWN: Recovery = Recovery::Retry;
    const REFUSED: Recovery = Recovery::NeedsAttention;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let config = BackoffConfig {
            base_ms: 100,
            cap_ms: 1_000,
            stable_after_ms: 10,
            ..BackoffConfig::default()
        };
        let mut backoff = Backoff::new(config, 7);
        let mut ceilings = std::vec::Vec::new();
        for _ in 0..6 {
            ceilings.push(backoff.ceiling_ms());
            backoff.next_delay_ms(LINK_DOWN);
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn delays_stay_within_the_ceiling_and_vary() {
        let mut backoff = Backoff::new(BackoffConfig::default(), 42);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let ceiling = backoff.ceiling_ms();
            let delay = backoff.next_delay_ms(LINK_DOWN);
            assert!(delay <= ceiling);
            seen.insert(delay);
        }
        assert!(
            seen.len() > 100,
            "full jitter spreads delays: {}",
            seen.len()
        );
    }

    #[test]
    fn many_attempts_never_overflow() {
        let mut backoff = Backoff::new(BackoffConfig::default(), 1);
        for _ in 0..10_000 {
            assert!(backoff.next_delay_ms(LINK_DOWN) <= 60_000);
        }
    }

    #[test]
    fn same_seed_same_delays_other_seed_other_delays() {
        let run = |seed| {
            let mut b = Backoff::new(BackoffConfig::default(), seed);
            (0..8)
                .map(|_| b.next_delay_ms(LINK_DOWN))
                .collect::<std::vec::Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn refusals_back_off_from_the_usual_cap_to_the_attention_cap_and_never_stop() {
        let config = BackoffConfig {
            base_ms: 100,
            cap_ms: 1_000,
            stable_after_ms: 10,
            attention_cap_ms: 6_000,
        };
        let mut backoff = Backoff::new(config, 9);
        let mut ceilings = std::vec::Vec::new();
        for _ in 0..1_000 {
            let ceiling = backoff.attention_ceiling_ms();
            let delay = backoff.next_delay_ms(REFUSED);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay} outside {ceiling}/2..={ceiling}"
            );
            ceilings.push(ceiling);
        }
        assert_eq!(ceilings[..5], [1_000, 2_000, 4_000, 6_000, 6_000]);
        assert!(ceilings.iter().all(|&c| c <= 6_000));
    }

    #[test]
    fn with_the_default_caps_refusals_are_retried_up_to_an_hour_apart_and_never_stop() {
        // The firmware's defaults: Kconfig's APP_RECONNECT_ATTENTION_CAP_S is 3600 too.
        let mut backoff = Backoff::new(BackoffConfig::default(), 3);
        let delays: std::vec::Vec<u32> = (0..200).map(|_| backoff.next_delay_ms(REFUSED)).collect();
        assert!(
            delays.iter().all(|&d| d > 0 && d <= 3_600_000),
            "{delays:?}"
        );
        // Doubling from the usual cap, the ceiling reaches the hour and stays there: every
        // later delay is between half an hour and an hour.
        let reached = delays.iter().position(|&d| d >= 1_800_000).unwrap();
        assert!(
            reached < 20,
            "the slow schedule took {reached} refusals to reach the hour"
        );
        assert!(
            delays[reached..].iter().all(|&d| d >= 1_800_000),
            "{delays:?}"
        );
    }

    #[test]
    fn refusals_do_not_slow_down_recovery_from_link_faults_and_vice_versa() {
        let config = BackoffConfig {
            base_ms: 100,
            cap_ms: 1_000,
            stable_after_ms: 10,
            attention_cap_ms: 8_000,
        };
        let mut backoff = Backoff::new(config, 9);
        backoff.next_delay_ms(REFUSED);
        backoff.next_delay_ms(REFUSED);
        assert_eq!(backoff.ceiling_ms(), 100);
        backoff.next_delay_ms(LINK_DOWN);
        assert_eq!(backoff.attention_ceiling_ms(), 4_000);
    }

    #[test]
    fn an_accepted_connection_or_new_credentials_end_the_slow_schedule() {
        let config = BackoffConfig {
            base_ms: 100,
            cap_ms: 1_000,
            stable_after_ms: 10_000,
            attention_cap_ms: 60_000,
        };
        let mut backoff = Backoff::new(config, 2);
        for _ in 0..4 {
            backoff.next_delay_ms(REFUSED);
        }
        backoff.accepted();
        assert_eq!(backoff.attention_ceiling_ms(), 1_000);
        for _ in 0..4 {
            backoff.next_delay_ms(REFUSED);
            backoff.next_delay_ms(LINK_DOWN);
        }
        backoff.reset();
        assert_eq!(
            (backoff.ceiling_ms(), backoff.attention_ceiling_ms()),
            (100, 1_000)
        );
    }

    #[test]
    fn an_attention_cap_below_the_usual_cap_is_raised_to_it() {
        let config = BackoffConfig {
            base_ms: 100,
            cap_ms: 5_000,
            stable_after_ms: 10,
            attention_cap_ms: 1_000,
        };
        let mut backoff = Backoff::new(config, 4);
        backoff.next_delay_ms(REFUSED);
        assert_eq!(backoff.attention_ceiling_ms(), 5_000);
    }

    #[test]
    fn only_a_stable_connection_resets_the_backoff() {
        let config = BackoffConfig {
            base_ms: 100,
            cap_ms: 10_000,
            stable_after_ms: 5_000,
            ..BackoffConfig::default()
        };
        let mut backoff = Backoff::new(config, 3);
        for _ in 0..4 {
            backoff.next_delay_ms(LINK_DOWN);
        }
        backoff.connection_ended(100);
        assert_eq!(backoff.ceiling_ms(), 1_600);
        backoff.connection_ended(5_000);
        assert_eq!(backoff.ceiling_ms(), 100);
    }
}
