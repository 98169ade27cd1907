//! The claim and renewal flow driven as the firmware drives it, step by step.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use fleet_provisioning::flow::{Action, Certificate, Failure, Flow, FlowConfig, Identity, Step};
use fleet_provisioning::issued::IssuedProblem;
use fleet_provisioning::messages::Rejected;
use fleet_provisioning::renewal::RenewalPolicy;
use mqtt_core::Instant;

const CONFIG: FlowConfig = FlowConfig {
    reply_timeout_ms: 30_000,
    renewal: RenewalPolicy {
        lifetime_percent: 75,
        days_before_expiry: 0,
        first_retry: 60,
        max_retry: 3_600,
    },
};

/// The action the flow asks for now, as an owned value for comparisons.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Subscribe,
    MakeKeyAndCsr,
    PublishCsr,
    Register(String),
    TryNewSet,
    Commit,
}

fn ask(flow: &mut Flow, now: u64) -> (Option<Asked>, Option<Failure>) {
    let (action, failure) = flow.poll_action(Instant(now));
    let asked = action.map(|action| match action {
        Action::Subscribe => Asked::Subscribe,
        Action::MakeKeyAndCsr => Asked::MakeKeyAndCsr,
        Action::PublishCsr => Asked::PublishCsr,
        Action::Register { ownership_token } => Asked::Register(ownership_token.to_owned()),
        Action::TryNewSet => Asked::TryNewSet,
        Action::Commit => Asked::Commit,
    });
    (asked, failure)
}

fn refusal() -> Rejected {
    Rejected {
        status_code: 400,
        error_code: "InvalidCSR".into(),
        error_message: "bad".into(),
    }
}

/// From a claim connection up to the certificate request being published.
fn to_request(flow: &mut Flow, now: u64) {
    assert_eq!(ask(flow, now).0, Some(Asked::Subscribe));
    flow.handle_subscribed();
    assert_eq!(ask(flow, now).0, Some(Asked::MakeKeyAndCsr));
    flow.handle_csr_ready(Instant(now));
    assert_eq!(ask(flow, now).0, Some(Asked::PublishCsr));
}

#[test]
fn a_claimed_device_gets_registers_tries_and_commits_its_own_certificate() {
    let mut flow = Flow::new(CONFIG);
    flow.handle_connected(Identity::Claim, Instant(0), None);
    to_request(&mut flow, 0);
    // Each action is handed out once.
    assert_eq!(ask(&mut flow, 10), (None, None));
    assert!(flow.awaits_certificate());
    assert_eq!(
        flow.handle_certificate(Ok("token-1"), Instant(500)),
        Certificate::Taken
    );
    assert!(!flow.awaits_certificate());
    assert_eq!(
        ask(&mut flow, 500).0,
        Some(Asked::Register("token-1".into()))
    );
    flow.handle_registered();
    assert_eq!(ask(&mut flow, 600).0, Some(Asked::TryNewSet));
    // The firmware closes the claim session and connects with the new set.
    assert_eq!(flow.handle_disconnected(Instant(700)), None);
    // Issued for 1,000..1,600 s; the clock reads 1,001 s at uptime 0.8 s.
    let own = Identity::Own {
        not_before: 1_000,
        not_after: 1_600,
    };
    flow.handle_connected(own, Instant(800), Some(1_001));
    assert_eq!(flow.handle_new_set(true, Instant(800)), None);
    assert_eq!(ask(&mut flow, 800).0, Some(Asked::Commit));
    flow.handle_committed();
    assert_eq!(ask(&mut flow, 900), (None, None));
    assert_eq!(flow.failures(), 0);
    // On the same connection, the new certificate's renewal is due at 75 % of its lifetime.
    assert_eq!(flow.deadline(), Some(Instant(800 + 449_000)));
    assert_eq!(ask(&mut flow, 449_799), (None, None));
    assert_eq!(ask(&mut flow, 449_800).0, Some(Asked::Subscribe));
}

#[test]
fn someone_elses_certificate_is_ignored_and_another_problem_is_a_failure() {
    let mut flow = Flow::new(CONFIG);
    flow.handle_connected(Identity::Claim, Instant(0), None);
    to_request(&mut flow, 0);
    assert_eq!(
        flow.handle_certificate(Err(IssuedProblem::OtherKey), Instant(100)),
        Certificate::Ignored
    );
    assert_eq!(ask(&mut flow, 100), (None, None));
    assert_eq!(
        flow.handle_certificate(Err(IssuedProblem::OtherCommonName), Instant(200)),
        Certificate::Refused(Failure::Issued(IssuedProblem::OtherCommonName))
    );
    // Backing off: a late certificate is not taken.
    assert_eq!(
        flow.handle_certificate(Ok("late"), Instant(300)),
        Certificate::Ignored
    );
    assert_eq!(ask(&mut flow, 300), (None, None));
    assert_eq!(flow.deadline(), Some(Instant(200 + 60_000)));
}

#[test]
fn no_reply_is_a_failure_after_the_timeout_and_the_flow_starts_again_after_the_back_off() {
    let mut flow = Flow::new(CONFIG);
    flow.handle_connected(Identity::Claim, Instant(0), None);
    to_request(&mut flow, 0);
    assert_eq!(flow.deadline(), Some(Instant(30_000)));
    assert_eq!(ask(&mut flow, 29_999), (None, None));
    assert_eq!(
        ask(&mut flow, 30_000),
        (None, Some(Failure::NoReply(Step::Certificate)))
    );
    assert_eq!(flow.deadline(), Some(Instant(90_000)));
    assert_eq!(ask(&mut flow, 89_999), (None, None));
    assert_eq!(ask(&mut flow, 90_000).0, Some(Asked::Subscribe));
}

#[test]
fn it_never_gives_up_and_the_delay_stops_growing_at_its_cap() {
    let mut flow = Flow::new(CONFIG);
    flow.handle_connected(Identity::Claim, Instant(0), None);
    let mut now = 0;
    let mut delays = Vec::new();
    for _ in 0..40 {
        to_request(&mut flow, now);
        now += 30_000;
        assert_eq!(
            ask(&mut flow, now).1,
            Some(Failure::NoReply(Step::Certificate))
        );
        let until = flow.deadline().unwrap().0;
        delays.push((until - now) / 1000);
        now = until;
    }
    assert_eq!(&delays[..7], &[60, 120, 240, 480, 960, 1920, 3600]);
    assert!(delays[7..].iter().all(|&d| d == 3600), "{delays:?}");
    assert_eq!(flow.failures(), 40);
}

#[test]
fn refusals_count_only_for_the_exchange_in_flight() {
    let mut flow = Flow::new(CONFIG);
    flow.handle_connected(Identity::Claim, Instant(0), None);
    to_request(&mut flow, 0);
    assert_eq!(
        flow.handle_rejected(Step::Registration, refusal(), Instant(1)),
        None
    );
    assert_eq!(
        flow.handle_rejected(Step::Certificate, refusal(), Instant(2)),
        Some(Failure::Rejected(Step::Certificate, refusal()))
    );
    assert_eq!(
        Failure::Rejected(Step::Certificate, refusal()).to_string(),
        "the certificate request was refused with status 400 (InvalidCSR): bad"
    );
    let mut flow = Flow::new(CONFIG);
    flow.handle_connected(Identity::Claim, Instant(0), None);
    to_request(&mut flow, 0);
    assert_eq!(
        flow.handle_certificate(Ok("t"), Instant(5)),
        Certificate::Taken
    );
    // A second certificate while registering is not taken: the first one's token stays.
    assert_eq!(
        flow.handle_certificate(Ok("t2"), Instant(5)),
        Certificate::Ignored
    );
    assert_eq!(ask(&mut flow, 5).0, Some(Asked::Register("t".into())));
    assert_eq!(
        flow.handle_rejected(Step::Registration, refusal(), Instant(6)),
        Some(Failure::Rejected(Step::Registration, refusal()))
    );
}

#[test]
fn renewal_waits_for_its_time_then_keeps_the_old_set_when_the_new_one_fails() {
    let mut flow = Flow::new(CONFIG);
    // Valid 1,000..1,600 s: due at 1,450; the clock reads 1,100 at uptime 5 s.
    let own = Identity::Own {
        not_before: 1_000,
        not_after: 1_600,
    };
    flow.handle_connected(own, Instant(5_000), Some(1_100));
    assert_eq!(flow.deadline(), Some(Instant(5_000 + 350_000)));
    assert_eq!(ask(&mut flow, 354_999), (None, None));
    assert_eq!(ask(&mut flow, 355_000).0, Some(Asked::Subscribe));
    flow.handle_subscribed();
    assert_eq!(ask(&mut flow, 355_000).0, Some(Asked::MakeKeyAndCsr));
    flow.handle_csr_ready(Instant(356_000));
    assert_eq!(ask(&mut flow, 356_000).0, Some(Asked::PublishCsr));
    flow.handle_certificate(Ok("tok"), Instant(357_000));
    assert_eq!(
        ask(&mut flow, 357_000).0,
        Some(Asked::Register("tok".into()))
    );
    flow.handle_registered();
    assert_eq!(ask(&mut flow, 358_000).0, Some(Asked::TryNewSet));
    assert_eq!(
        flow.handle_new_set(false, Instant(359_000)),
        Some(Failure::NewSetRefused)
    );
    // The old set reconnects; the back-off runs on. 146 s of the old certificate were left at
    // the failure (1,454 s): the retry comes after a tenth of that, 14 s, not the first 60 s.
    flow.handle_connected(own, Instant(360_000), Some(1_455));
    assert_eq!(flow.deadline(), Some(Instant(359_000 + 14_000)));
    assert_eq!(ask(&mut flow, 372_999), (None, None));
    assert_eq!(ask(&mut flow, 373_000).0, Some(Asked::Subscribe));
}

#[test]
fn a_key_failure_or_a_dropped_connection_mid_exchange_is_a_failure_retried_later() {
    let mut flow = Flow::new(CONFIG);
    flow.handle_connected(Identity::Claim, Instant(0), None);
    assert_eq!(ask(&mut flow, 0).0, Some(Asked::Subscribe));
    flow.handle_subscribed();
    assert_eq!(ask(&mut flow, 0).0, Some(Asked::MakeKeyAndCsr));
    assert_eq!(
        flow.handle_key_failed(-0x4080, Instant(10)),
        Failure::KeyGeneration(-0x4080)
    );
    assert_eq!(ask(&mut flow, 60_010).0, Some(Asked::Subscribe));
    flow.handle_subscribed();
    flow.handle_csr_ready(Instant(60_020));
    assert_eq!(ask(&mut flow, 60_020).0, Some(Asked::PublishCsr));
    assert_eq!(
        flow.handle_disconnected(Instant(60_030)),
        Some(Failure::Disconnected)
    );
    // Reconnected during the back-off: the back-off still runs to its end.
    flow.handle_connected(Identity::Claim, Instant(61_000), None);
    assert_eq!(ask(&mut flow, 61_000), (None, None));
    assert_eq!(ask(&mut flow, 60_030 + 120_000).0, Some(Asked::Subscribe));
}

#[test]
fn a_token_longer_than_kept_is_named() {
    let mut flow = Flow::new(CONFIG);
    flow.handle_connected(Identity::Claim, Instant(0), None);
    to_request(&mut flow, 0);
    let token = "x".repeat(fleet_provisioning::flow::MAX_OWNERSHIP_TOKEN + 1);
    assert_eq!(
        flow.handle_certificate(Ok(&token), Instant(1)),
        Certificate::Refused(Failure::TokenTooLong)
    );
}

#[test]
fn a_refused_subscription_or_a_failed_flash_write_is_a_failure_retried_later() {
    let mut flow = Flow::new(CONFIG);
    flow.handle_connected(Identity::Claim, Instant(0), None);
    assert_eq!(ask(&mut flow, 0).0, Some(Asked::Subscribe));
    assert_eq!(
        flow.handle_subscribe_failed(Instant(10)),
        Some(Failure::SubscriptionRefused)
    );
    // Once failed, a second report of the same thing is not a second failure.
    assert_eq!(flow.handle_subscribe_failed(Instant(11)), None);
    assert_eq!(flow.failures(), 1);
    assert_eq!(ask(&mut flow, 60_009), (None, None));
    to_request(&mut flow, 60_010);
    flow.handle_certificate(Ok("t"), Instant(60_020));
    assert_eq!(
        flow.handle_store_failed(-28, Instant(60_030)),
        Some(Failure::NotStored(-28))
    );
    assert_eq!(flow.failures(), 2);
    assert_eq!(
        Failure::NotStored(-28).to_string(),
        "the new certificate could not be stored (error -28)"
    );
    assert_eq!(ask(&mut flow, 60_030 + 120_000).0, Some(Asked::Subscribe));
}

#[test]
fn a_certificate_is_the_devices_own_only_with_the_client_id_as_its_common_name() {
    assert_eq!(
        Identity::of(Some("dev-0042"), "dev-0042", 10, 20),
        Identity::Own {
            not_before: 10,
            not_after: 20
        }
    );
    assert_eq!(
        Identity::of(Some("claim-batch-1"), "dev-0042", 10, 20),
        Identity::Claim
    );
    assert_eq!(Identity::of(None, "dev-0042", 10, 20), Identity::Claim);
    assert_eq!(
        Identity::of(Some("dev-00421"), "dev-0042", 10, 20),
        Identity::Claim
    );
}
