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

/// ward's CA: two self-signed roots made and rotated together, one ECDSA P-256 (what signs
/// the ECDSA server certificate) and one RSA 2048 (what signs the RSA certificate), so that a
/// stack that verifies RSA signatures only (Windows XP's CryptoAPI, Java 6 without SunEC)
/// can verify the chain it is served. Kept as one file of certificates (ECDSA first, then
/// RSA) and one of keys, in that order: the files a CA rotation moves as they are. A CA of a
/// data dir from before the RSA root has the ECDSA one only (its RSA certificate is then
/// signed by the ECDSA root).
#[derive(Clone)]
pub struct CaBundle {
    pub ecdsa: Issued,
    pub rsa: Option<Issued>,
}

impl CaBundle {
    /// Both roots, new, valid for ten years (`common_name`, and `common_name (RSA)`).
    pub fn new(common_name: &str) -> Result<CaBundle, ErrorStack> {
        Ok(CaBundle {
            ecdsa: new_ca(common_name)?,
            rsa: Some(new_ca_of(
                KeyType::Rsa2048,
                &format!("{common_name} (RSA)"),
            )?),
        })
    }

    /// The certificates, ECDSA first.
    pub fn cert_pem(&self) -> Result<Vec<u8>, ErrorStack> {
        let mut pem = self.ecdsa.cert_pem()?;
        if let Some(rsa) = &self.rsa {
            pem.extend(rsa.cert_pem()?);
        }
        Ok(pem)
    }

    /// The private keys, in the certificates' order.
    pub fn key_pem(&self) -> Result<Vec<u8>, ErrorStack> {
        let mut pem = self.ecdsa.key_pem()?;
        if let Some(rsa) = &self.rsa {
            pem.extend(rsa.key_pem()?);
        }
        Ok(pem)
    }

    /// Reads the two files back: each certificate with the key whose public half it holds.
    /// The first certificate is the ECDSA root; an RSA root, if any, follows.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CaBundle, String> {
        let certs = X509::stack_from_pem(cert_pem).map_err(|e| e.to_string())?;
        let keys = private_keys_from_pem(key_pem)?;
        let mut pairs = Vec::new();
        for cert in certs {
            let public = cert.public_key().map_err(|e| e.to_string())?;
            let key = keys
                .iter()
                .find(|key| key.public_eq(&public))
                .ok_or_else(|| "a CA certificate without its private key".to_string())?;
            pairs.push(Issued {
                cert,
                key: key.clone(),
            });
        }
        let mut pairs = pairs.into_iter();
        let ecdsa = pairs.next().ok_or("no CA certificate in it")?;
        let rsa = pairs.find(|p| p.key.rsa().is_ok());
        Ok(CaBundle { ecdsa, rsa })
    }

    /// The root that signs a server certificate of `key_type`: the RSA one for RSA when there
    /// is one.
    pub fn signer(&self, key_type: KeyType) -> &Issued {
        match (key_type, &self.rsa) {
            (KeyType::Rsa2048, Some(rsa)) => rsa,
            _ => &self.ecdsa,
        }
    }
}

/// Every private key of a PEM text (one block after another).
fn private_keys_from_pem(pem: &[u8]) -> Result<Vec<PKey<Private>>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "the key file is not PEM text".to_string())?;
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let Some(end_marker) = block.find("-----END ") else {
            break;
        };
        let end = block[end_marker..]
            .find('\n')
            .map_or(block.len(), |n| end_marker + n + 1);
        let key =
            PKey::private_key_from_pem(&block.as_bytes()[..end]).map_err(|e| e.to_string())?;
        keys.push(key);
        rest = &block[end..];
    }
    if keys.is_empty() {
        return Err("no private key in it".into());
    }
    Ok(keys)
}

/// A self-signed ECDSA P-256 CA valid for ten years.
pub fn new_ca(common_name: &str) -> Result<Issued, ErrorStack> {
    new_ca_of(KeyType::EcdsaP256, common_name)
}

/// A self-signed CA of `key_type` valid for ten years.
pub fn new_ca_of(key_type: KeyType, common_name: &str) -> Result<Issued, ErrorStack> {
    let key = match key_type {
        KeyType::EcdsaP256 => p256_key()?,
        KeyType::Rsa2048 => PKey::from_rsa(openssl::rsa::Rsa::generate(2048)?)?,
    };
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

    /// The two roots go to their files and come back paired; each signs the server
    /// certificate of its own key type, verifiable with that root alone; a data dir's CA
    /// from before (ECDSA only) still reads, and signs both.
    #[test]
    fn a_ca_bundle_round_trips_and_each_root_signs_its_own_key_type() {
        let bundle = CaBundle::new("ward test CA").unwrap();
        let (cert_pem, key_pem) = (bundle.cert_pem().unwrap(), bundle.key_pem().unwrap());
        assert_eq!(certificate_fingerprints(&cert_pem).len(), 2);
        let read = CaBundle::from_pem(&cert_pem, &key_pem).unwrap();
        assert_eq!(
            read.ecdsa.cert.to_der().unwrap(),
            bundle.ecdsa.cert.to_der().unwrap()
        );
        let rsa_root = read.rsa.as_ref().expect("an RSA root");
        assert!(rsa_root.key.rsa().is_ok());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for (key_type, root) in [
            (KeyType::EcdsaP256, &read.ecdsa),
            (KeyType::Rsa2048, rsa_root),
        ] {
            let leaf = new_server_cert_of(key_type, read.signer(key_type), &["h"], &[ip]).unwrap();
            assert!(leaf.cert.verify(&root.cert.public_key().unwrap()).unwrap());
            assert_eq!(
                leaf.cert.issuer_name().to_der().unwrap(),
                root.cert.subject_name().to_der().unwrap()
            );
        }
        // The RSA leaf is not the ECDSA root's: an RSA-only verifier needs no ECDSA.
        let rsa_leaf =
            new_server_cert_of(KeyType::Rsa2048, read.signer(KeyType::Rsa2048), &["h"], &[])
                .unwrap();
        assert!(!rsa_leaf
            .cert
            .verify(&read.ecdsa.cert.public_key().unwrap())
            .unwrap_or(false));
        // Before the RSA root: one certificate, one key.
        let old = new_ca("old CA").unwrap();
        let read = CaBundle::from_pem(&old.cert_pem().unwrap(), &old.key_pem().unwrap()).unwrap();
        assert!(read.rsa.is_none());
        assert_eq!(
            read.signer(KeyType::Rsa2048).cert.to_der().unwrap(),
            old.cert.to_der().unwrap()
        );
        // A key that belongs to no certificate is refused.
        let other = new_ca("other").unwrap();
        assert!(CaBundle::from_pem(&old.cert_pem().unwrap(), &other.key_pem().unwrap()).is_err());
        assert!(CaBundle::from_pem(&old.cert_pem().unwrap(), b"").is_err());
    }

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
