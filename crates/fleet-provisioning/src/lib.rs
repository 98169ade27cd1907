//! Certificates for a fleet, sans IO: a device with only a claim identity (a certificate
//! shared by a batch, allowed only on the provisioning topics) gets its own certificate for a
//! key made on the device, and renews it before it expires, over MQTT, in the topics and
//! payloads of AWS IoT's fleet-provisioning API, so that the same firmware works against AWS
//! IoT and against a broker and signer of the user's own:
//!
//! 1. subscribe to `$aws/certificates/create-from-csr/json/{accepted,rejected}` and
//!    `$aws/provisioning-templates/<template>/provision/json/{accepted,rejected}`;
//! 2. publish `{"certificateSigningRequest": "<PEM>"}` to `$aws/certificates/create-from-csr/json`;
//! 3. take `certificatePem` and `certificateOwnershipToken` from the reply, check the
//!    certificate against the device's own key and name ([`issued`]);
//! 4. publish `{"certificateOwnershipToken": …, "parameters": {…}}` to the template's
//!    `provision/json` topic and wait for `thingName`;
//! 5. store the new set and reconnect with it.
//!
//! This crate holds the steps and what a failure means ([`flow`]), the topics ([`topics`]),
//! the payloads ([`messages`]), the key's encodings and the CSR ([`csr`]), what an issued
//! certificate says ([`x509`]) and whether it is the device's ([`issued`]), and when to renew
//! and retry ([`renewal`]); the firmware makes the key and signs with PSA, verifies the
//! certificate against the device CA with mbedTLS, and stores the set as `cred commit` does.
#![no_std]
#![forbid(unsafe_code)]

pub mod csr;
pub mod flow;
pub mod issued;
pub mod messages;
pub mod renewal;
pub mod topics;
pub mod x509;
