//! The steps of provisioning by claim and of renewal, sans IO: the firmware reports what
//! happened (`handle_*`), asks what to do next ([`Flow::poll_action`]) and sleeps until
//! [`Flow::deadline`]. Key generation, the CSR, the checks' facts, flash and the connection
//! stay in the firmware; which step comes next, what a failure means and when to try again
//! are decided here.
//!
//! Both start from a connected MQTT session: with the claim identity the flow enrols at once;
//! with the device's own certificate it waits until renewal is due. Either way a new key and
//! certificate are staged, never the set in use, and committed only after a connection made
//! with them worked ([`Action::TryNewSet`]); any failure keeps the set in use and tries again
//! later, on a schedule that never gives up.

use crate::issued::IssuedProblem;
use crate::messages::Rejected;
use crate::renewal::RenewalPolicy;
use core::fmt;
use heapless::String;
use mqtt_core::Instant;

/// The longest ownership token kept between the certificate and the registration.
pub const MAX_OWNERSHIP_TOKEN: usize = 1024;

/// The identity of the connection the flow runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The batch's claim certificate: allowed only on the provisioning topics.
    Claim,
    /// The device's own certificate, valid between these times (seconds since 1970).
    Own { not_before: u64, not_after: u64 },
}

impl Identity {
    /// The identity a device certificate gives: the device's own if its common name is the
    /// client id (the CN its requests ask for), else a claim certificate shared by a batch,
    /// whether built into the image or provisioned by hand.
    pub fn of(
        common_name: Option<&str>,
        client_id: &str,
        not_before: u64,
        not_after: u64,
    ) -> Identity {
        if common_name == Some(client_id) {
            Identity::Own {
                not_before,
                not_after,
            }
        } else {
            Identity::Claim
        }
    }
}

/// What the firmware must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'f> {
    /// Subscribe to the four reply topics (`topics`), then [`Flow::handle_subscribed`].
    Subscribe,
    /// Make a new P-256 key, staged beside the one in use, and a CSR for it; then
    /// [`Flow::handle_csr_ready`] or [`Flow::handle_key_failed`].
    MakeKeyAndCsr,
    /// Publish the CSR to `create-from-csr/json`; the reply comes to
    /// [`Flow::handle_certificate`] or [`Flow::handle_rejected`].
    PublishCsr,
    /// Publish the registration with this ownership token to the template's topic; the
    /// reply comes to [`Flow::handle_registered`] or [`Flow::handle_rejected`].
    Register { ownership_token: &'f str },
    /// Connect with the staged key and certificate; then [`Flow::handle_new_set`].
    TryNewSet,
    /// The new set worked: commit it (the one write that makes it the device's).
    Commit,
}

/// Which exchange a refusal or a timeout belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Certificate,
    Registration,
}

/// Why an attempt failed, for the log; the flow tries again at [`Flow::deadline`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Rejected(Step, Rejected),
    NoReply(Step),
    Issued(IssuedProblem),
    /// The ownership token was longer than the device keeps.
    TokenTooLong,
    /// Key or CSR generation failed (an mbedTLS or storage error code).
    KeyGeneration(i32),
    /// The connection with the new set failed; the set in use stays.
    NewSetRefused,
    /// The connection closed in the middle of an exchange.
    Disconnected,
    /// The broker refused the subscription to the reply topics (or the session had no room).
    SubscriptionRefused,
    /// Writing the new certificate or the commit to flash failed (a storage error code).
    NotStored(i32),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = |step: &Step| match step {
            Step::Certificate => "the certificate request",
            Step::Registration => "the registration",
        };
        match self {
            Self::Rejected(s, refusal) => write!(f, "{} was {refusal}", step(s)),
            Self::NoReply(s) => write!(f, "{} got no reply in time", step(s)),
            Self::Issued(problem) => write!(f, "{problem}"),
            Self::TokenTooLong => {
                f.write_str("the ownership token is longer than the device keeps")
            }
            Self::KeyGeneration(code) => {
                write!(f, "making the key or the CSR failed (error {code})")
            }
            Self::NewSetRefused => {
                f.write_str("a connection with the new certificate failed; the one in use stays")
            }
            Self::Disconnected => f.write_str("the connection closed during the exchange"),
            Self::SubscriptionRefused => {
                f.write_str("the subscription to the reply topics was refused")
            }
            Self::NotStored(code) => {
                write!(f, "the new certificate could not be stored (error {code})")
            }
        }
    }
}

/// What became of a certificate that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certificate {
    /// The device's: stage it beside the set in use, then register.
    Taken,
    /// Not awaited now, or someone else's: drop it.
    Ignored,
    /// Awaited but wrong: the attempt failed.
    Refused(Failure),
}

/// Timing and naming, from Kconfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowConfig {
    /// How long to wait for a reply to a request.
    pub reply_timeout_ms: u64,
    pub renewal: RenewalPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// No session, or nothing to do until `due` (wall clock, seconds since 1970).
    Idle {
        due: Option<u64>,
    },
    Subscribing,
    MakingKey,
    Requesting {
        since: Instant,
    },
    Registering {
        since: Instant,
    },
    TryingNewSet,
    Committing,
    /// After a failure, until `until`.
    BackingOff {
        until: Instant,
    },
}

/// Provisioning by claim and renewal: one per device, driven by the MQTT thread.
#[derive(Debug)]
pub struct Flow {
    config: FlowConfig,
    identity: Option<Identity>,
    state: State,
    /// The action of the current state was handed out.
    acted: bool,
    failures: u32,
    token: String<MAX_OWNERSHIP_TOKEN>,
    /// Wall-clock time at the last `handle_connected`, with the monotonic time then.
    clock: Option<(Instant, u64)>,
}

impl Flow {
    pub const fn new(config: FlowConfig) -> Self {
        Self {
            config,
            identity: None,
            state: State::Idle { due: None },
            acted: false,
            failures: 0,
            token: String::new(),
            clock: None,
        }
    }

    /// A session is up with `identity`; `unix_now` is the wall clock if SNTP has set it.
    pub fn handle_connected(&mut self, identity: Identity, now: Instant, unix_now: Option<u64>) {
        self.identity = Some(identity);
        self.clock = unix_now.map(|unix| (now, unix));
        // A back-off runs to its end; a new set being tried or committed is the reason for
        // this very connection.
        if matches!(
            self.state,
            State::BackingOff { .. } | State::TryingNewSet | State::Committing
        ) {
            return;
        }
        self.state = match identity {
            Identity::Claim => State::Subscribing,
            Identity::Own {
                not_before,
                not_after,
            } => State::Idle {
                due: Some(self.config.renewal.due_at(not_before, not_after)),
            },
        };
        self.acted = false;
    }

    /// The session closed: an exchange in flight is a failure (tried again after a delay).
    pub fn handle_disconnected(&mut self, now: Instant) -> Option<Failure> {
        self.identity = None;
        match self.state {
            State::Idle { .. } | State::BackingOff { .. } => None,
            // The connection with the new set is made by closing this one.
            State::TryingNewSet | State::Committing => None,
            _ => Some(self.fail(Failure::Disconnected, now)),
        }
    }

    pub fn handle_subscribed(&mut self) {
        self.advance_from(&State::Subscribing, State::MakingKey);
    }

    /// The subscription to the reply topics failed or was refused.
    pub fn handle_subscribe_failed(&mut self, now: Instant) -> Option<Failure> {
        (self.state == State::Subscribing).then(|| self.fail(Failure::SubscriptionRefused, now))
    }

    /// Staging the certificate taken, or committing the set, failed.
    pub fn handle_store_failed(&mut self, code: i32, now: Instant) -> Option<Failure> {
        matches!(self.state, State::Registering { .. } | State::Committing)
            .then(|| self.fail(Failure::NotStored(code), now))
    }

    pub fn handle_csr_ready(&mut self, now: Instant) {
        self.advance_from(&State::MakingKey, State::Requesting { since: now });
    }

    pub fn handle_key_failed(&mut self, code: i32, now: Instant) -> Failure {
        self.fail(Failure::KeyGeneration(code), now)
    }

    /// Whether a certificate is awaited: the firmware reads and checks one only then.
    pub fn awaits_certificate(&self) -> bool {
        matches!(self.state, State::Requesting { .. })
    }

    /// Whether the registration's reply is awaited.
    pub fn awaits_registration(&self) -> bool {
        matches!(self.state, State::Registering { .. })
    }

    /// A certificate arrived and was checked: `Ok` with its ownership token, or the problem.
    /// Someone else's certificate (another key) is ignored: on a broker of the user's own,
    /// every claim-identity subscriber receives every reply. Only a [`Certificate::Taken`]
    /// one is staged by the firmware.
    pub fn handle_certificate(
        &mut self,
        checked: Result<&str, IssuedProblem>,
        now: Instant,
    ) -> Certificate {
        if !self.awaits_certificate() {
            return Certificate::Ignored;
        }
        match checked {
            Err(problem) if problem.is_someone_elses() => Certificate::Ignored,
            Err(problem) => Certificate::Refused(self.fail(Failure::Issued(problem), now)),
            Ok(token) => {
                self.token.clear();
                if self.token.push_str(token).is_err() {
                    return Certificate::Refused(self.fail(Failure::TokenTooLong, now));
                }
                self.enter(State::Registering { since: now });
                Certificate::Taken
            }
        }
    }

    /// A refusal on one of the `rejected` topics, while that exchange is in flight.
    pub fn handle_rejected(
        &mut self,
        step: Step,
        refusal: Rejected,
        now: Instant,
    ) -> Option<Failure> {
        match (&self.state, step) {
            (State::Requesting { .. }, Step::Certificate)
            | (State::Registering { .. }, Step::Registration) => {
                Some(self.fail(Failure::Rejected(step, refusal), now))
            }
            _ => None,
        }
    }

    /// The registration was accepted: the staged set is to be tried.
    pub fn handle_registered(&mut self) {
        self.advance_from_registering();
    }

    /// The outcome of the connection made with the staged set.
    pub fn handle_new_set(&mut self, worked: bool, now: Instant) -> Option<Failure> {
        if self.state != State::TryingNewSet {
            return None;
        }
        if worked {
            self.enter(State::Committing);
            None
        } else {
            Some(self.fail(Failure::NewSetRefused, now))
        }
    }

    /// The commit was written: done until the new certificate's renewal (its validity came
    /// with the `handle_connected` of the connection that tried it).
    pub fn handle_committed(&mut self) {
        if self.state == State::Committing {
            self.failures = 0;
            self.token.clear();
            let due = match self.identity {
                Some(Identity::Own {
                    not_before,
                    not_after,
                }) => Some(self.config.renewal.due_at(not_before, not_after)),
                _ => None,
            };
            self.enter(State::Idle { due });
        }
    }

    /// Also the place where deadlines pass: call it whenever the thread wakes.
    pub fn poll_action(&mut self, now: Instant) -> (Option<Action<'_>>, Option<Failure>) {
        let failure = self.check_time(now);
        if self.acted {
            return (None, failure);
        }
        let action = match &self.state {
            State::Idle { .. } | State::BackingOff { .. } => None,
            State::Subscribing => Some(Action::Subscribe),
            State::MakingKey => Some(Action::MakeKeyAndCsr),
            State::Requesting { .. } => Some(Action::PublishCsr),
            State::Registering { .. } => Some(Action::Register {
                ownership_token: self.token.as_str(),
            }),
            State::TryingNewSet => Some(Action::TryNewSet),
            State::Committing => Some(Action::Commit),
        };
        self.acted = action.is_some();
        (action, failure)
    }

    /// When the flow next needs the thread, if it waits on time.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Requesting { since } | State::Registering { since } => {
                Some(since.plus_ms(self.config.reply_timeout_ms))
            }
            State::BackingOff { until } => Some(*until),
            State::Idle { due: Some(due) } => {
                let (at, unix) = self.clock?;
                Some(at.plus_ms(due.saturating_sub(unix).saturating_mul(1000)))
            }
            _ => None,
        }
    }

    fn check_time(&mut self, now: Instant) -> Option<Failure> {
        let deadline = self.deadline()?;
        if now < deadline {
            return None;
        }
        match self.state {
            State::Requesting { .. } => Some(self.fail(Failure::NoReply(Step::Certificate), now)),
            State::Registering { .. } => Some(self.fail(Failure::NoReply(Step::Registration), now)),
            State::BackingOff { .. } | State::Idle { .. } => {
                self.restart();
                None
            }
            _ => None,
        }
    }

    /// Start again from the subscriptions (a reply to a request sent before the SUBACK could
    /// be lost); with no session, wait for `handle_connected`.
    fn restart(&mut self) {
        let next = match self.identity {
            Some(_) => State::Subscribing,
            None => State::Idle { due: None },
        };
        self.enter(next);
    }

    fn fail(&mut self, failure: Failure, now: Instant) -> Failure {
        self.failures = self.failures.saturating_add(1);
        let not_after = match self.identity {
            Some(Identity::Own { not_after, .. }) => not_after,
            _ => u64::MAX,
        };
        let unix_now = self
            .clock
            .map_or(0, |(at, unix)| unix.saturating_add(now.ms_since(at) / 1000));
        let retry_at = self
            .config
            .renewal
            .retry_at(self.failures, unix_now, not_after);
        let delay_ms = retry_at.saturating_sub(unix_now).saturating_mul(1000);
        self.enter(State::BackingOff {
            until: now.plus_ms(delay_ms),
        });
        failure
    }

    fn advance_from(&mut self, from: &State, to: State) {
        if &self.state == from {
            self.enter(to);
        }
    }

    fn advance_from_registering(&mut self) {
        if matches!(self.state, State::Registering { .. }) {
            self.enter(State::TryingNewSet);
        }
    }

    fn enter(&mut self, state: State) {
        self.state = state;
        self.acted = false;
    }

    /// Failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}
