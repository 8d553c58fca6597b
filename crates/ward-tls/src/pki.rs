//! A private CA and server certificates (ECDSA P-256, and RSA 2048 for clients that cannot use
//! ECDSA), for `ward server init` and for tests.

use std::net::IpAddr;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

/// Seconds from now until `cert` expires (negative once expired).
pub fn seconds_left(cert: &openssl::x509::X509Ref) -> Result<i64, ErrorStack> {
    let now = openssl::asn1::Asn1Time::days_from_now(0)?;
    let diff = now.diff(cert.not_after())?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

/// The SHA-256 (lowercase hex) of the DER of each certificate in `pem`, in order: how an
/// agent names the CAs it trusts, and how the server tells whether a rotation's new CA is
/// among them. Text that holds no certificate gives none.
pub fn certificate_fingerprints(pem: &[u8]) -> Vec<String> {
    X509::stack_from_pem(pem)
        .unwrap_or_default()
        .iter()
        .filter_map(|cert| cert.to_der().ok())
        .map(|der| {
            openssl::sha::sha256(&der)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .collect()
}

/// A certificate with its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
}

impl Issued {
    pub fn cert_pem(&self) -> Result<Vec<u8>, ErrorStack> {
        self.cert.to_pem()
    }

    pub fn key_pem(&self) -> Result<Vec<u8>, ErrorStack> {
        self.key.private_key_to_pem_pkcs8()
    }
}

fn p256_key() -> Result<PKey<Private>, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

/// A builder with version, serial, subject, key and validity set.
fn base_builder(
    common_name: &str,
    key: &PKey<Private>,
    days: u32,
) -> Result<X509Builder, ErrorStack> {
    let name = common_name_only(common_name)?;
    let mut builder = X509Builder::new()?;
    builder.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(&name)?;
    builder.set_pubkey(key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(days)?;
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    Ok(builder)
}

fn common_name_only(common_name: &str) -> Result<openssl::x509::X509Name, ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(name.build())
}

/// A self-signed CA valid for ten years.
pub fn new_ca(common_name: &str) -> Result<Issued, ErrorStack> {
    let key = p256_key()?;
    let mut builder = base_builder(common_name, &key, 3650)?;
    let issuer = common_name_only(common_name)?;
    builder.set_issuer_name(&issuer)?;
    builder.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    builder.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
    builder.append_extension(ski)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok(Issued {
        cert: builder.build(),
        key,
    })
}

/// The key type of a server certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256: what modern clients get.
    EcdsaP256,
    /// RSA 2048: for old stacks with RSA key exchange or no ECDSA (the seed's XP clients).
    Rsa2048,
}

/// A server certificate signed by `ca` for the given DNS names and IP addresses, valid for
/// two years, with an ECDSA P-256 key.
pub fn new_server_cert(ca: &Issued, dns: &[&str], ips: &[IpAddr]) -> Result<Issued, ErrorStack> {
    new_server_cert_of(KeyType::EcdsaP256, ca, dns, ips)
}

/// A server certificate as [`new_server_cert`], with a key of `key_type`.
pub fn new_server_cert_of(
    key_type: KeyType,
    ca: &Issued,
    dns: &[&str],
    ips: &[IpAddr],
) -> Result<Issued, ErrorStack> {
    new_server_cert_for(key_type, ca, dns, ips, 730)
}

/// A server certificate as [`new_server_cert_of`], valid for `days` days.
pub fn new_server_cert_for(
    key_type: KeyType,
    ca: &Issued,
    dns: &[&str],
    ips: &[IpAddr],
    days: u32,
) -> Result<Issued, ErrorStack> {
    let key = match key_type {
        KeyType::EcdsaP256 => p256_key()?,
        KeyType::Rsa2048 => PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?,
    };
    let common_name = dns.first().copied().unwrap_or("ward server");
    let mut builder = base_builder(common_name, &key, days)?;
    builder.set_issuer_name(ca.cert.subject_name())?;
    builder.append_extension(BasicConstraints::new().build()?)?;
    let mut usage = KeyUsage::new();
    usage.critical().digital_signature();
    match key_type {
        KeyType::EcdsaP256 => usage.key_agreement(),
        // RSA key exchange encrypts the premaster secret to this key.
        KeyType::Rsa2048 => usage.key_encipherment(),
    };
    builder.append_extension(usage.build()?)?;
    builder.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let mut san = SubjectAlternativeName::new();
    for name in dns {
        san.dns(name);
    }
    for ip in ips {
        san.ip(&ip.to_string());
    }
    let san = san.build(&builder.x509v3_context(Some(&ca.cert), None))?;
    builder.append_extension(san)?;
    builder.sign(&ca.key, MessageDigest::sha256())?;
    Ok(Issued {
        cert: builder.build(),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_name_each_certificate_of_a_bundle_in_order() {
        let (old, new) = (
            new_ca("ward old CA").unwrap(),
            new_ca("ward new CA").unwrap(),
        );
        let bundle = [old.cert_pem().unwrap(), new.cert_pem().unwrap()].concat();
        let prints = certificate_fingerprints(&bundle);
        assert_eq!(prints.len(), 2);
        assert_ne!(prints[0], prints[1]);
        assert_eq!(prints[0].len(), 64);
        assert_eq!(
            certificate_fingerprints(&old.cert_pem().unwrap()),
            &prints[..1]
        );
        assert!(certificate_fingerprints(b"").is_empty());
        assert!(certificate_fingerprints(b"not a certificate").is_empty());
    }
}
