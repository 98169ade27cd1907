//! When to renew the device's certificate: at a share of its lifetime (a certificate issued
//! for minutes in a test and one issued for a year both renew in time), and no later than a
//! number of days before notAfter; after a failed attempt, again after a delay that grows,
//! never later than the certificate's end allows.

/// The renewal threshold, from Kconfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalPolicy {
    /// Renew once this share of the lifetime (per cent, 1..=99) has passed.
    pub lifetime_percent: u8,
    /// ...and at the latest this many days before notAfter.
    pub days_before_expiry: u32,
    /// The first retry after a failed renewal, seconds; doubled each time up to `max_retry`.
    pub first_retry: u32,
    pub max_retry: u32,
}

const DAY: u64 = 86_400;

impl RenewalPolicy {
    /// When a certificate valid from `not_before` to `not_after` (seconds since 1970) is due:
    /// the earlier of the two thresholds, but the days rule never before half the lifetime
    /// (a certificate shorter than the days would otherwise be renewed without end).
    pub fn due_at(&self, not_before: u64, not_after: u64) -> u64 {
        let lifetime = u128::from(not_after.saturating_sub(not_before));
        let at_share = |percent: u128| {
            let passed = u64::try_from(lifetime * percent / 100).unwrap_or(u64::MAX);
            not_before.saturating_add(passed)
        };
        let by_share = at_share(u128::from(self.lifetime_percent.clamp(1, 99)));
        let by_days = not_after.saturating_sub(u64::from(self.days_before_expiry) * DAY);
        by_share.min(by_days.max(at_share(50)))
    }

    /// When to try again after `failures` failed attempts (1 = the first failed), given now:
    /// the delay doubles from `first_retry` up to `max_retry`, and the last try is a tenth of
    /// the remaining time before `not_after` at most, so that tries get closer near the end.
    pub fn retry_at(&self, failures: u32, now: u64, not_after: u64) -> u64 {
        let doubled =
            u64::from(self.first_retry).saturating_mul(1 << failures.saturating_sub(1).min(20));
        let delay = doubled.min(u64::from(self.max_retry));
        let remaining = not_after.saturating_sub(now);
        now + delay.min(remaining / 10).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RenewalPolicy = RenewalPolicy {
        lifetime_percent: 75,
        days_before_expiry: 30,
        first_retry: 60,
        max_retry: 3_600,
    };

    #[test]
    fn a_short_certificate_renews_at_its_share_of_the_lifetime() {
        // Issued for ten minutes (the tests' signer), no days rule: due after 7.5 minutes.
        let no_days = RenewalPolicy {
            days_before_expiry: 0,
            ..POLICY
        };
        assert_eq!(no_days.due_at(1_000, 1_600), 1_450);
        // A days rule longer than the lifetime brings it only to half the lifetime.
        assert_eq!(POLICY.due_at(1_000, 1_600), 1_300);
    }

    #[test]
    fn a_long_certificate_renews_at_the_earlier_threshold() {
        let year = 365 * DAY;
        // One year at 75 %: day 273.75, before "30 days before the end" (day 335).
        assert_eq!(POLICY.due_at(0, year), year / 4 * 3);
        // One year at 99 %: day 361.35, after day 335: the days rule wins.
        let late_share = RenewalPolicy {
            lifetime_percent: 99,
            ..POLICY
        };
        assert_eq!(late_share.due_at(0, year), year - 30 * DAY);
        assert_eq!(late_share.due_at(year, 2 * year), 2 * year - 30 * DAY);
    }

    #[test]
    fn due_never_before_the_start_nor_after_the_end() {
        assert_eq!(POLICY.due_at(100, 50), 100);
        assert_eq!(POLICY.due_at(0, u64::MAX), u64::MAX / 4 * 3 + 2);
        for (start, end) in [(0, 1), (5, 5), (u64::MAX - 10, u64::MAX), (0, u64::MAX)] {
            let due = POLICY.due_at(start, end);
            assert!(start <= due && due <= end, "{start}..{end}: {due}");
        }
    }

    #[test]
    fn retries_double_up_to_the_cap_and_come_closer_near_the_end() {
        let far = 1_000_000_000;
        assert_eq!(POLICY.retry_at(1, 0, far), 60);
        assert_eq!(POLICY.retry_at(2, 0, far), 120);
        assert_eq!(POLICY.retry_at(7, 0, far), 3_600);
        assert_eq!(POLICY.retry_at(200, 0, far), 3_600);
        // 1,000 s left: no more than 100 s to the next try.
        assert_eq!(POLICY.retry_at(7, 10_000, 11_000), 10_100);
        // Past the end: still tries, one second on.
        assert_eq!(POLICY.retry_at(7, 12_000, 11_000), 12_001);
    }
}
