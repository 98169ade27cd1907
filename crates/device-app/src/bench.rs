//! The publish benchmark behind `mqtt bench`: a number of numbered messages of one size,
//! handed to the session as fast as its outbox takes them, so that a subscriber can count
//! them and see which (if any) went missing.

/// The largest payload a benchmark message may have (the shell's `mqtt pub` limit too).
pub const BENCH_PAYLOAD_MAX: usize = 192;
/// The smallest: room for the largest sequence number (`u32::MAX`, 10 digits) and one pad.
pub const BENCH_PAYLOAD_MIN: usize = 11;

/// Why a benchmark was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchError {
    /// Zero messages asked for.
    NoMessages,
    /// The payload size is outside [`BENCH_PAYLOAD_MIN`]..=[`BENCH_PAYLOAD_MAX`].
    PayloadSize,
}

impl BenchError {
    /// A short text for the log.
    pub fn as_str(&self) -> &'static str {
        match self {
            BenchError::NoMessages => "no messages asked for",
            BenchError::PayloadSize => "payload size out of range",
        }
    }
}

/// Where a benchmark stands: how many messages are queued of how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishBench {
    total: u32,
    queued: u32,
    payload_len: usize,
}

impl PublishBench {
    /// `total` messages of `payload_len` bytes each.
    pub fn new(total: u32, payload_len: usize) -> Result<Self, BenchError> {
        if total == 0 {
            return Err(BenchError::NoMessages);
        }
        if !(BENCH_PAYLOAD_MIN..=BENCH_PAYLOAD_MAX).contains(&payload_len) {
            return Err(BenchError::PayloadSize);
        }
        Ok(Self {
            total,
            queued: 0,
            payload_len,
        })
    }

    /// The next message's payload, written into `buf`: its sequence number (from 0) in
    /// decimal, padded with `.` to the payload size. `None` once every message is queued.
    pub fn next_payload<'a>(&self, buf: &'a mut [u8; BENCH_PAYLOAD_MAX]) -> Option<&'a [u8]> {
        if self.queued >= self.total {
            return None;
        }
        let payload = buf.get_mut(..self.payload_len)?;
        payload.fill(b'.');
        let mut digits = [0u8; 10];
        let mut n = self.queued;
        let mut len = 0;
        loop {
            *digits.get_mut(len)? = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for (dst, src) in payload.iter_mut().zip(digits.get(..len)?.iter().rev()) {
            *dst = *src;
        }
        Some(payload)
    }

    /// Records that the payload last returned by [`Self::next_payload`] is in the outbox.
    pub fn mark_queued(&mut self) {
        self.queued = self.queued.saturating_add(1).min(self.total);
    }

    /// Whether every message is in the outbox (or gone from it).
    pub fn all_queued(&self) -> bool {
        self.queued >= self.total
    }

    /// How many messages, in all.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// How many are queued so far.
    pub fn queued(&self) -> u32 {
        self.queued
    }

    /// The payload size.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payloads(bench: &mut PublishBench) -> std::vec::Vec<std::string::String> {
        let mut buf = [0u8; BENCH_PAYLOAD_MAX];
        let mut out = std::vec::Vec::new();
        while let Some(payload) = bench.next_payload(&mut buf) {
            out.push(std::string::String::from_utf8(payload.to_vec()).unwrap());
            bench.mark_queued();
        }
        out
    }

    #[test]
    fn messages_are_numbered_from_zero_and_padded_to_the_size() {
        let mut bench = PublishBench::new(3, 12).unwrap();
        assert_eq!(
            payloads(&mut bench),
            ["0...........", "1...........", "2..........."]
        );
        assert!(bench.all_queued());
        assert_eq!(bench.queued(), 3);
    }

    #[test]
    fn a_payload_is_not_handed_out_again_until_marked_queued() {
        let bench = PublishBench::new(2, 11).unwrap();
        let mut buf = [0u8; BENCH_PAYLOAD_MAX];
        assert_eq!(bench.next_payload(&mut buf), Some(&b"0.........."[..]));
        assert_eq!(bench.next_payload(&mut buf), Some(&b"0.........."[..]));
    }

    #[test]
    fn the_largest_sequence_number_fits_the_smallest_payload() {
        let mut bench = PublishBench::new(u32::MAX, BENCH_PAYLOAD_MIN).unwrap();
        bench.queued = u32::MAX - 1;
        let mut buf = [0u8; BENCH_PAYLOAD_MAX];
        assert_eq!(bench.next_payload(&mut buf), Some(&b"4294967294."[..]));
        bench.mark_queued();
        assert_eq!(bench.next_payload(&mut buf), None);
        bench.mark_queued();
        assert_eq!(bench.queued(), u32::MAX);
    }

    #[test]
    fn bad_plans_are_refused() {
        assert_eq!(PublishBench::new(0, 64), Err(BenchError::NoMessages));
        assert_eq!(
            PublishBench::new(1, BENCH_PAYLOAD_MIN - 1),
            Err(BenchError::PayloadSize)
        );
        assert_eq!(
            PublishBench::new(1, BENCH_PAYLOAD_MAX + 1),
            Err(BenchError::PayloadSize)
        );
        assert!(PublishBench::new(1, BENCH_PAYLOAD_MAX).is_ok());
    }

    proptest! {
        #[test]
        fn every_payload_has_the_size_and_parses_back_to_its_number(
            total in 1u32..300, len in BENCH_PAYLOAD_MIN..=BENCH_PAYLOAD_MAX,
        ) {
            let mut bench = PublishBench::new(total, len).unwrap();
            let all = payloads(&mut bench);
            prop_assert_eq!(all.len() as u32, total);
            for (i, payload) in all.iter().enumerate() {
                prop_assert_eq!(payload.len(), len);
                prop_assert_eq!(payload.trim_end_matches('.').parse::<usize>().unwrap(), i);
            }
        }
    }
}
