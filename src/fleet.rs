//! Certificates issued and renewed over MQTT (Kconfig `APP_FLEET_PROVISIONING`), in AWS IoT
//! fleet provisioning's topics and payloads: the MQTT thread's hands for
//! [`fleet_provisioning::flow::Flow`], which decides every step. Here: the subscriptions,
//! the key and request (`runtime_credentials`), the publishes, the replies taken apart and
//! checked, the certificate staged and the set committed.

use crate::app::MqttSession;
use crate::credentials;
use crate::ffi;
use crate::runtime_credentials::{self, Credentials};
use crate::settings::Settings;
use fleet_provisioning::csr::{Subject, MAX_CSR_PEM, SPKI_P256_LEN};
pub use fleet_provisioning::flow::Identity;
use fleet_provisioning::flow::{
    Action, Certificate, Failure, Flow, FlowConfig, Step, MAX_OWNERSHIP_TOKEN,
};
use fleet_provisioning::issued::{self, Expected, IssuedFacts, IssuedProblem};
use fleet_provisioning::renewal::RenewalPolicy;
use fleet_provisioning::topics::{self, Reply, TemplateName};
use fleet_provisioning::{messages, x509};
use heapless::Vec;
use log::{info, warn};
use mqtt_core::{Instant, QoS};
use provisioning::MAX_CERTIFICATE;
use static_cell::{ConstStaticCell, StaticCell};
use zephyr::kconfig;

/// The certificate request as published: the CSR's PEM in JSON, each line end escaped.
const REQUEST_MAX: usize = MAX_CSR_PEM + 64;

/// What the steps keep between rounds, in a static: the requests and the reply's parts.
struct Buffers {
    /// The request or registration to publish.
    request: Vec<u8, REQUEST_MAX>,
    /// The CSR's PEM while its request is made.
    pem: [u8; MAX_CSR_PEM],
    /// The issued certificate, DER.
    certificate: [u8; MAX_CERTIFICATE],
    token: [u8; MAX_OWNERSHIP_TOKEN],
}

static BUFFERS: ConstStaticCell<Buffers> = ConstStaticCell::new(Buffers {
    request: Vec::new(),
    pem: [0; MAX_CSR_PEM],
    certificate: [0; MAX_CERTIFICATE],
    token: [0; MAX_OWNERSHIP_TOKEN],
});

/// The flow, made at start if the image provisions by claim.
static FLEET: StaticCell<Fleet> = StaticCell::new();

/// The flow, where the image has it built in: `None` at compile time otherwise, so that none
/// of its code (JSON, X.509, the flow) is linked into an image without it.
pub fn built_in<'f>(fleet: &'f Option<&mut Fleet>) -> Option<&'f Fleet> {
    if cfg!(CONFIG_APP_FLEET_PROVISIONING) {
        fleet.as_deref()
    } else {
        None
    }
}

/// [`built_in`], to act on.
pub fn built_in_mut<'f>(fleet: &'f mut Option<&mut Fleet>) -> Option<&'f mut Fleet> {
    if cfg!(CONFIG_APP_FLEET_PROVISIONING) {
        fleet.as_deref_mut()
    } else {
        None
    }
}

/// What the supervisor must do for the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Close this connection and make the next one with the staged set.
    TryNewSet,
}

/// The flow and what the MQTT thread keeps for it.
pub struct Fleet {
    flow: Flow,
    /// An attempt failed since the last poll: what it staged goes.
    staged_to_drop: bool,
    template: TemplateName<'static>,
    client_id: &'static str,
    serial_number: &'static str,
    subject: Subject<'static>,
    /// The SUBSCRIBE of the reply topics, until its SUBACK.
    subscription: Option<u16>,
    /// The SubjectPublicKeyInfo of the key the request in flight is for.
    expected_key: [u8; SPKI_P256_LEN],
    buffers: &'static mut Buffers,
}

impl Fleet {
    /// The flow, in its static, if this image provisions by claim; `None` (and a warning)
    /// without it or with a template name AWS IoT would refuse.
    pub fn new(settings: &'static Settings) -> Option<&'static mut Self> {
        if !cfg!(CONFIG_APP_FLEET_PROVISIONING) {
            return None;
        }
        let template = match TemplateName::new(kconfig::CONFIG_APP_FLEET_TEMPLATE) {
            Ok(template) => template,
            Err(cause) => {
                warn!("fleet: provisioning off: {cause} (APP_FLEET_TEMPLATE)");
                return None;
            }
        };
        let serial_number = match kconfig::CONFIG_APP_FLEET_SERIAL_NUMBER {
            "" => settings.client_id,
            serial => serial,
        };
        let seconds = |s: isize| u32::try_from(s).unwrap_or(u32::MAX);
        let config = FlowConfig {
            reply_timeout_ms: u64::from(seconds(kconfig::CONFIG_APP_FLEET_REPLY_TIMEOUT_S)) * 1000,
            renewal: RenewalPolicy {
                lifetime_percent: u8::try_from(kconfig::CONFIG_APP_FLEET_RENEW_PERCENT)
                    .unwrap_or(80),
                days_before_expiry: seconds(kconfig::CONFIG_APP_FLEET_RENEW_DAYS_BEFORE),
                first_retry: seconds(kconfig::CONFIG_APP_FLEET_RETRY_FIRST_S),
                max_retry: seconds(kconfig::CONFIG_APP_FLEET_RETRY_MAX_S),
            },
        };
        Some(FLEET.init(Self {
            flow: Flow::new(config),
            staged_to_drop: false,
            template,
            client_id: settings.client_id,
            serial_number,
            subject: runtime_credentials::request_subject(settings),
            subscription: None,
            expected_key: [0; SPKI_P256_LEN],
            buffers: BUFFERS.take(),
        }))
    }

    /// The identity of the set in use.
    pub fn identity(client_id: &str) -> Option<Identity> {
        runtime_credentials::active_identity(client_id)
    }

    /// The session is up (CONNACK) with the set in use; `trying` says whether that is the
    /// staged set the flow asked for.
    pub fn connected(&mut self, trying: bool, now: Instant, unix_now: Option<u64>) {
        self.subscription = None;
        let Some(identity) = Self::identity(self.client_id) else {
            warn!("fleet: this set has no device certificate; nothing to provision");
            return;
        };
        self.flow.handle_connected(identity, now, unix_now);
        if trying {
            self.flow.handle_new_set(true, now);
        }
        if let (Identity::Claim, Some(_)) = (identity, unix_now) {
            info!("fleet: connected with the claim certificate: asking for the device's own");
        }
    }

    /// The connection ended.
    pub fn disconnected(&mut self, now: Instant) {
        self.subscription = None;
        if let Some(failure) = self.flow.handle_disconnected(now) {
            self.log_failure(&failure);
        }
    }

    /// The connection with the staged set failed before CONNACK: the stored set stays.
    pub fn new_set_refused(&mut self, now: Instant, credentials: &mut Credentials) {
        credentials.drop_staged();
        if let Some(failure) = self.flow.handle_new_set(false, now) {
            self.log_failure(&failure);
        }
    }

    /// A SUBACK: whether it is for the reply topics, and all four were granted.
    pub fn handle_subscribed(&mut self, packet_id: u16, all_granted: bool, now: Instant) {
        if self.subscription != Some(packet_id) {
            return;
        }
        self.subscription = None;
        if all_granted {
            self.flow.handle_subscribed();
        } else if let Some(failure) = self.flow.handle_subscribe_failed(now) {
            self.log_failure(&failure);
        }
    }

    /// A message: `true` if it was a reply of the provisioning API (taken here, whoever it
    /// was for). An issued certificate is staged in `credentials`.
    pub fn handle_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        now: Instant,
        unix: Option<u64>,
        credentials: &mut Credentials,
    ) -> bool {
        let Some(reply) = topics::reply(self.template, topic) else {
            return false;
        };
        match reply {
            Reply::CertificateAccepted => self.handle_certificate(payload, now, unix, credentials),
            Reply::CertificateRejected => self.handle_rejected(Step::Certificate, payload, now),
            Reply::RegistrationAccepted => match messages::registration_accepted(payload) {
                Ok(thing) if self.flow.awaits_registration() => {
                    info!("fleet: registered as thing {thing}");
                    self.flow.handle_registered();
                }
                Ok(_) => {}
                Err(cause) => warn!("fleet: registration reply unreadable: {cause}"),
            },
            Reply::RegistrationRejected => self.handle_rejected(Step::Registration, payload, now),
        }
        true
    }

    fn handle_rejected(&mut self, step: Step, payload: &[u8], now: Instant) {
        match messages::rejected(payload) {
            Ok(refusal) => {
                if let Some(failure) = self.flow.handle_rejected(step, refusal, now) {
                    self.log_failure(&failure);
                }
            }
            Err(cause) => warn!("fleet: refusal unreadable: {cause}"),
        }
    }

    /// A certificate on the shared reply topic: the device's if it certifies the key the
    /// device made; staged then.
    fn handle_certificate(
        &mut self,
        payload: &[u8],
        now: Instant,
        unix: Option<u64>,
        credentials: &mut Credentials,
    ) {
        if !self.flow.awaits_certificate() {
            return;
        }
        let Buffers {
            certificate, token, ..
        } = &mut *self.buffers;
        let accepted = match messages::certificate_accepted(payload, certificate, token) {
            Ok(accepted) => accepted,
            Err(cause) => {
                warn!("fleet: certificate reply unreadable: {cause}");
                return;
            }
        };
        let expected = Expected {
            public_key: &self.expected_key,
            common_name: self.client_id,
            now: unix,
        };
        // Whose it is cannot be told if it does not parse: the reply's timeout counts it if
        // it was ours.
        let Some(checked) = check_issued(accepted.certificate, &expected) else {
            return;
        };
        let outcome = self
            .flow
            .handle_certificate(checked.map(|()| accepted.ownership_token), now);
        match outcome {
            Certificate::Taken => {
                info!(
                    "fleet: certificate {} issued for this device's key",
                    accepted.certificate_id
                );
                if let Err(cause) = credentials.stage_certificate(accepted.certificate) {
                    warn!("fleet: the issued certificate was not staged: {cause}");
                    if let Some(failure) = self.flow.handle_store_failed(-1, now) {
                        self.log_failure(&failure);
                    }
                }
            }
            Certificate::Refused(failure) => self.log_failure(&failure),
            Certificate::Ignored => {}
        }
    }

    /// The flow's next step, if it has one now; what the supervisor must do for it. A new
    /// key is staged in `credentials`, and committed there.
    pub fn poll(
        &mut self,
        session: &mut MqttSession<'_>,
        now: Instant,
        credentials: &mut Credentials,
    ) -> Option<Request> {
        if core::mem::take(&mut self.staged_to_drop) {
            credentials.drop_staged();
        }
        let action = match self.flow.poll_action(now) {
            (None, Some(failure)) => {
                failed(&failure, self.flow.failures());
                credentials.drop_staged();
                return None;
            }
            // A failure comes with no action: the flow backs off at once.
            (action, _) => action?,
        };
        match action {
            Action::Subscribe => self.subscribe(session, now),
            Action::MakeKeyAndCsr => self.make_request(now, credentials),
            Action::PublishCsr => {
                let request = &self.buffers.request;
                publish(
                    session,
                    topics::CREATE_FROM_CSR,
                    request,
                    "certificate request",
                );
            }
            Action::Register { ownership_token } => {
                let parameters = [("SerialNumber", self.serial_number)];
                let mut payload = [0u8; MAX_OWNERSHIP_TOKEN + 256];
                match messages::register_thing(ownership_token, &parameters, &mut payload) {
                    Ok(len) => publish(
                        session,
                        &topics::provision(self.template),
                        payload.get(..len).unwrap_or_default(),
                        "registration",
                    ),
                    Err(cause) => warn!("fleet: registration not sent: {cause}"),
                }
            }
            Action::TryNewSet => {
                info!("fleet: connecting with the new certificate before committing it");
                return Some(Request::TryNewSet);
            }
            Action::Commit => self.commit(now, credentials),
        }
        None
    }

    fn subscribe(&mut self, session: &mut MqttSession<'_>, now: Instant) {
        let accepted = topics::provision_accepted(self.template);
        let rejected = topics::provision_rejected(self.template);
        let filters = [
            (topics::CREATE_FROM_CSR_ACCEPTED, QoS::AtLeastOnce),
            (topics::CREATE_FROM_CSR_REJECTED, QoS::AtLeastOnce),
            (accepted.as_str(), QoS::AtLeastOnce),
            (rejected.as_str(), QoS::AtLeastOnce),
        ];
        match session.subscribe(&filters) {
            Ok(packet_id) => self.subscription = Some(packet_id),
            Err(cause) => {
                warn!("fleet: cannot subscribe to the reply topics: {cause}");
                if let Some(failure) = self.flow.handle_subscribe_failed(now) {
                    self.log_failure(&failure);
                }
            }
        }
    }

    fn make_request(&mut self, now: Instant, credentials: &mut Credentials) {
        let Buffers { request, pem, .. } = &mut *self.buffers;
        let made = credentials.new_key_and_request(&self.subject, pem);
        let (len, spki) = match made {
            Ok(made) => made,
            Err(cause) => {
                warn!("fleet: key or request not made: {cause}");
                let failure = self.flow.handle_key_failed(cause.code(), now);
                self.log_failure(&failure);
                return;
            }
        };
        self.expected_key = spki;
        let text = core::str::from_utf8(pem.get(..len).unwrap_or_default()).unwrap_or_default();
        let _ = request.resize_default(REQUEST_MAX);
        match messages::create_from_csr(text, request) {
            Ok(len) => {
                request.truncate(len);
                info!("fleet: new key made and staged; sending its certificate request");
                self.flow.handle_csr_ready(now);
            }
            Err(cause) => {
                request.clear();
                warn!("fleet: request not made: {cause}");
                let failure = self.flow.handle_key_failed(-1, now);
                self.log_failure(&failure);
            }
        }
    }

    fn commit(&mut self, now: Instant, credentials: &mut Credentials) {
        match credentials.commit_staged() {
            Ok(()) => {
                info!("fleet: new certificate committed; it is the device's from now on");
                self.flow.handle_committed();
            }
            Err(cause) => {
                warn!("fleet: commit failed: {cause}");
                if let Some(failure) = self.flow.handle_store_failed(-1, now) {
                    self.log_failure(&failure);
                }
            }
        }
    }

    /// An attempt failed: said in words; what it staged is dropped at the next poll (the
    /// stored set stays).
    fn log_failure(&mut self, failure: &Failure) {
        self.staged_to_drop = true;
        failed(failure, self.flow.failures());
    }
}

fn failed(failure: &Failure, in_a_row: u32) {
    warn!("fleet: {failure}; trying again later (failure {in_a_row} in a row)");
}

/// Whether `certificate` verifies against the device CA the image was built with, `None`
/// without one (AWS IoT's own CA issues it, and the connection made with it is the check).
/// Whether an issued certificate is the one `expected`; `None` (logged) if it does not parse.
fn check_issued(certificate: &[u8], expected: &Expected<'_>) -> Option<Result<(), IssuedProblem>> {
    match x509::certificate_facts(certificate) {
        Ok(facts) => Some(issued::check(
            &IssuedFacts {
                public_key: facts.public_key,
                common_name: facts.common_name,
                not_before: facts.not_before,
                not_after: facts.not_after,
                issued_by_device_ca: issued_by_device_ca(certificate),
            },
            expected,
        )),
        Err(cause) => {
            warn!("fleet: an issued certificate does not parse: {cause}");
            None
        }
    }
}

fn issued_by_device_ca(certificate: &[u8]) -> Option<bool> {
    let ca = credentials::builtin_device_ca()?;
    // SAFETY: both pointer/length pairs describe live slices; nothing is kept.
    Some(unsafe {
        ffi::app_issued_by(
            certificate.as_ptr(),
            certificate.len(),
            ca.as_ptr(),
            ca.len(),
        )
    })
}

/// Publishes a request at QoS 1; a failure is logged (the reply's timeout retries it).
fn publish(session: &mut MqttSession<'_>, topic: &str, payload: &[u8], what: &str) {
    if let Err(cause) = session.publish(topic, payload, QoS::AtLeastOnce, false) {
        warn!("fleet: {what} not sent: {cause}");
    }
}
