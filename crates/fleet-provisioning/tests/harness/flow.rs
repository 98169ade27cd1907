//! Any sequence of the firmware's reports to the claim and renewal flow, two bytes a step
//! (which report, then how many seconds pass). Invariants: no panic; an action is handed out
//! once until something happens; every failure leaves a deadline (the flow never gives up);
//! the failure count only grows, until a commit resets it; a registration carries the last
//! token taken.

use fleet_provisioning::flow::{Action, Certificate, Flow, FlowConfig, Identity, Step};
use fleet_provisioning::issued::IssuedProblem;
use fleet_provisioning::messages::Rejected;
use fleet_provisioning::renewal::RenewalPolicy;
use mqtt_core::Instant;

const CONFIG: FlowConfig = FlowConfig {
    reply_timeout_ms: 30_000,
    renewal: RenewalPolicy {
        lifetime_percent: 75,
        days_before_expiry: 30,
        first_retry: 60,
        max_retry: 3_600,
    },
};

fn refusal() -> Rejected {
    Rejected {
        status_code: 400,
        error_code: "x".into(),
        error_message: "y".into(),
    }
}

pub fn run(data: &[u8]) {
    let mut flow = Flow::new(CONFIG);
    let mut now = Instant(0);
    let mut token_taken: Option<String> = None;
    let mut failures = 0;
    let mut last_action_handed = false;
    for step in data.chunks(2) {
        let (&report, seconds) = step.split_first().unwrap_or((&0, &[]));
        now = now.plus_ms(u64::from(seconds.first().copied().unwrap_or(0)) * 1000);
        let unix = 1_000_000 + now.0 / 1000;
        let mut happened = true;
        let failure = match report % 16 {
            0 => {
                flow.handle_connected(Identity::Claim, now, Some(unix));
                None
            }
            1 => {
                let own = Identity::Own {
                    not_before: unix - 100,
                    not_after: unix + 400,
                };
                flow.handle_connected(own, now, Some(unix));
                None
            }
            2 => flow.handle_disconnected(now),
            3 => {
                flow.handle_subscribed();
                None
            }
            4 => {
                flow.handle_csr_ready(now);
                None
            }
            5 => Some(flow.handle_key_failed(-1, now)),
            6 => {
                let token = format!("token-{}", now.0);
                let awaited = flow.awaits_certificate();
                match flow.handle_certificate(Ok(&token), now) {
                    Certificate::Taken => {
                        assert!(awaited, "a certificate taken when none was awaited");
                        token_taken = Some(token);
                        None
                    }
                    Certificate::Ignored => {
                        assert!(!awaited, "an awaited certificate of the own key ignored");
                        None
                    }
                    Certificate::Refused(failure) => Some(failure),
                }
            }
            7 => {
                let outcome = flow.handle_certificate(Err(IssuedProblem::OtherKey), now);
                assert_eq!(outcome, Certificate::Ignored, "someone else's certificate");
                None
            }
            8 => match flow.handle_certificate(Err(IssuedProblem::OtherCommonName), now) {
                Certificate::Taken => panic!("a certificate for another name taken"),
                Certificate::Ignored => None,
                Certificate::Refused(failure) => Some(failure),
            },
            9 => flow.handle_rejected(Step::Certificate, refusal(), now),
            10 => flow.handle_rejected(Step::Registration, refusal(), now),
            11 => {
                flow.handle_registered();
                None
            }
            12 => flow.handle_new_set(true, now),
            13 => flow.handle_new_set(false, now),
            14 => {
                flow.handle_committed();
                None
            }
            _ => {
                happened = false;
                let (action, failure) = flow.poll_action(now);
                let handed = action.is_some();
                if let Some(Action::Register { ownership_token }) = action {
                    assert_eq!(Some(ownership_token), token_taken.as_deref());
                }
                // The same state, no time passed, nothing reported: nothing new to do.
                if last_action_handed && step.get(1) == Some(&0) && failure.is_none() {
                    assert!(!handed, "an action handed out twice");
                }
                last_action_handed = handed;
                failure
            }
        };
        if happened {
            last_action_handed = false;
        }
        if failure.is_some() {
            assert!(flow.deadline().is_some(), "a failure without a next try");
        }
        if flow.failures() < failures {
            assert_eq!(
                flow.failures(),
                0,
                "the failure count went down without a commit"
            );
        }
        failures = flow.failures();
    }
}
