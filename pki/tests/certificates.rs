//! The agent's certificates, checked the way a TLS peer checks them (rustls' webpki) and read
//! back with an X.509 parser: names, usages, validity and the renewal decision.

use std::time::{Duration, SystemTime};

use cmm_pki::{expiry, inspect, inspect_bundle, verify, Ca, Error, San, Usage};

const DAY: Duration = Duration::from_secs(86_400);

fn ip(s: &str) -> San {
    San::parse(s).unwrap()
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn a_server_certificate_is_trusted_for_exactly_its_addresses() {
    let ca = Ca::generate(now()).unwrap();
    let sans = [
        ip("10.0.0.11"),
        ip("2001:db8::11"),
        ip("prom.kr-mum.example"),
    ];
    let server = ca.issue_server("kr-mum", &sans, now()).unwrap();
    // (address dialled, trusted?)
    let table = [
        ("10.0.0.11", true),
        ("2001:db8::11", true),
        ("prom.kr-mum.example", true),
        ("10.0.0.12", false),
        ("other.example", false),
    ];
    for (addr, trusted) in table {
        let r = verify(
            &server.cert_pem,
            ca.cert_pem(),
            Usage::Server,
            Some(&ip(addr)),
            now(),
        );
        assert_eq!(r.is_ok(), trusted, "{addr}: {r:?}");
    }
    let info = inspect(&server.cert_pem, "server").unwrap();
    assert_eq!(info.subject, "kr-mum");
    let mut got = info.sans.clone();
    got.sort();
    let mut want = sans.to_vec();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn each_certificate_is_good_for_its_own_use_only() {
    let ca = Ca::generate(now()).unwrap();
    let server = ca
        .issue_server("kr-mum", &[ip("10.0.0.11")], now())
        .unwrap();
    let client = ca.issue_client("cmm-grafana", now()).unwrap();
    // (certificate, usage, accepted?)
    let table = [
        (&server, Usage::Server, true),
        (&server, Usage::Client, false),
        (&client, Usage::Client, true),
        (&client, Usage::Server, false),
    ];
    for (leaf, usage, ok) in table {
        let r = verify(&leaf.cert_pem, ca.cert_pem(), usage, None, now());
        assert_eq!(r.is_ok(), ok, "{usage:?}: {r:?}");
    }
    let s = inspect(&server.cert_pem, "server").unwrap();
    let c = inspect(&client.cert_pem, "client").unwrap();
    let a = inspect(ca.cert_pem(), "ca").unwrap();
    assert!(s.server_auth && !s.client_auth && s.digital_signature && !s.is_ca);
    assert!(c.client_auth && !c.server_auth && c.digital_signature && !c.is_ca);
    assert!(a.is_ca && a.subject.starts_with("CMM CA "));
    assert_eq!(s.issuer, a.subject);
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let ours = Ca::generate(now()).unwrap();
    let theirs = Ca::generate(now()).unwrap();
    let foreign = theirs.issue_client("cmm-grafana", now()).unwrap();
    let err = verify(
        &foreign.cert_pem,
        ours.cert_pem(),
        Usage::Client,
        None,
        now(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Untrusted { .. }), "{err}");
}

#[test]
fn during_a_rotation_the_bundle_trusts_both_generations() {
    let old = Ca::generate(now()).unwrap();
    let new = Ca::generate(now() + Duration::from_secs(1)).unwrap();
    let bundle = format!("{}{}", new.cert_pem(), old.cert_pem());
    assert_eq!(inspect_bundle(&bundle, "bundle").unwrap().len(), 2);
    for ca in [&old, &new] {
        let c = ca.issue_client("cmm-grafana", now()).unwrap();
        verify(&c.cert_pem, &bundle, Usage::Client, None, now()).unwrap();
    }
    // Once the old CA is dropped from the bundle its leaves stop being accepted.
    let c = old.issue_client("cmm-grafana", now()).unwrap();
    assert!(verify(&c.cert_pem, new.cert_pem(), Usage::Client, None, now()).is_err());
}

#[test]
fn a_certificate_is_valid_only_inside_its_lifetime() {
    let ca = Ca::generate(now()).unwrap();
    let leaf = ca.issue_client("cmm-grafana", now()).unwrap();
    let info = inspect(&leaf.cert_pem, "leaf").unwrap();
    let year = info.not_after.duration_since(now()).unwrap();
    assert!((364 * DAY..=365 * DAY).contains(&year), "{year:?}");
    // Issued a few minutes back, for a node whose clock is slightly behind.
    assert!(verify(
        &leaf.cert_pem,
        ca.cert_pem(),
        Usage::Client,
        None,
        now() - Duration::from_secs(60)
    )
    .is_ok());
    for (at, ok) in [
        (now() + 200 * DAY, true),
        (now() + 366 * DAY, false),
        (now() - DAY, false),
    ] {
        let r = verify(&leaf.cert_pem, ca.cert_pem(), Usage::Client, None, at);
        assert_eq!(r.is_ok(), ok, "{r:?}");
    }
}

#[test]
fn renewal_is_due_inside_the_window_and_after_expiry() {
    let ca = Ca::generate(now()).unwrap();
    let leaf = ca.issue_client("cmm-grafana", now()).unwrap();
    let info = inspect(&leaf.cert_pem, "leaf").unwrap();
    let window = 30 * DAY;
    // (days from now, days left, renew?, expired?)
    let table: [(u32, i64, bool, bool); 5] = [
        (0, 364, false, false),
        (334, 30, false, false),
        (336, 28, true, false),
        (364, 0, true, false),
        (400, -35, true, true),
    ];
    for (later, left, renew, expired) in table {
        let e = expiry(&info, now() + later * DAY, window);
        assert_eq!(
            (e.days_left, e.renew, e.expired),
            (left, renew, expired),
            "day {later}"
        );
    }
}

#[test]
fn a_ca_key_that_is_not_the_certificates_is_refused() {
    let a = Ca::generate(now()).unwrap();
    let b = Ca::generate(now()).unwrap();
    Ca::load(a.cert_pem(), a.key_pem()).unwrap();
    assert!(matches!(
        Ca::load(a.cert_pem(), b.key_pem()),
        Err(Error::KeyMismatch)
    ));
    // A leaf is no CA, even with its own key.
    let leaf = a.issue_client("x", now()).unwrap();
    assert!(Ca::load(&leaf.cert_pem, &leaf.key_pem).is_err());
    // And a CA loaded back signs what the original trusts.
    let again = Ca::load(a.cert_pem(), a.key_pem()).unwrap();
    let c = again.issue_client("cmm-grafana", now()).unwrap();
    verify(&c.cert_pem, a.cert_pem(), Usage::Client, None, now()).unwrap();
}

#[test]
fn addresses_are_checked_before_anything_is_made() {
    for bad in ["", "a b", "-x.example", "x..example", "http://10.0.0.1"] {
        assert!(San::parse(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        San::parse("[2001:db8::1]").unwrap().to_string(),
        "2001:db8::1"
    );
    assert_eq!(
        San::parse("Prom.Example").unwrap(),
        San::Dns("prom.example".into())
    );
    let ca = Ca::generate(now()).unwrap();
    assert!(ca.issue_server("kr-mum", &[], now()).is_err());
}

#[test]
fn a_private_key_never_shows_in_debug_output() {
    let ca = Ca::generate(now()).unwrap();
    let leaf = ca.issue_client("cmm-grafana", now()).unwrap();
    for shown in [format!("{leaf:?}"), format!("{ca:?}")] {
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
}
