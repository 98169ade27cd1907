//! Any bytes as an issued certificate (DER). Invariants: no panic; what is read lies inside
//! the input, the names and the key each a whole SEQUENCE, the common name inside the
//! subject; the dates are within what the two time types can say; and the input cut by one
//! byte is refused (every length is counted).

use fleet_provisioning::x509::certificate_facts;

/// 9999-12-31T23:59:59Z, the last second a GeneralizedTime of RFC 5280 can name.
const LAST_SECOND: u64 = 253_402_300_799;

fn inside(part: &[u8], whole: &[u8]) -> bool {
    let (part, whole) = (part.as_ptr_range(), whole.as_ptr_range());
    whole.start <= part.start && part.end <= whole.end
}

pub fn run(data: &[u8]) {
    let Ok(facts) = certificate_facts(data) else {
        return;
    };
    for part in [facts.issuer, facts.subject, facts.public_key] {
        assert!(inside(part, data));
        assert_eq!(part.first(), Some(&0x30), "{part:02x?}");
    }
    assert!(facts.issuer.as_ptr() < facts.subject.as_ptr());
    assert!(facts.subject.as_ptr() < facts.public_key.as_ptr());
    if let Some(name) = facts.common_name {
        assert!(inside(name.as_bytes(), facts.subject));
    }
    assert!(facts.not_before <= LAST_SECOND && facts.not_after <= LAST_SECOND);
    let cut = data.get(..data.len() - 1).unwrap_or_default();
    assert!(certificate_facts(cut).is_err());
}
