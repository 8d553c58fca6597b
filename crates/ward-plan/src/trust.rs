//! What a handshake alone cannot show: whether an agent that checks the server's certificate
//! would accept the listener's. An agent pins the CA it got at enrollment (ward's CA) and
//! checks the host name of the server list entry it connects to, exactly as OpenSSL's
//! verification does it here: chain, validity dates, then name.
//!
//! [`Certificates::load`] reads the listener's certificate files (the only I/O);
//! [`Certificates::untrusted`] judges them for each host.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509Ref, X509StoreContext, X509};
use ward_tls::conf::TlsPolicy;

/// A listener's certificate chains, as its conf names them.
pub struct Certificates {
    /// (the file as the conf names it, its certificates: the leaf first).
    chains: Vec<(String, Vec<X509>)>,
}

impl Certificates {
    /// Reads every `SSLCertificateFile` of `policy` (relative paths against `root`).
    pub fn load(policy: &TlsPolicy, root: &Path) -> Result<Certificates, String> {
        let mut chains = Vec::new();
        for file in &policy.certificate_files {
            let path = if Path::new(&file.value).is_absolute() {
                Path::new(&file.value).to_path_buf()
            } else {
                root.join(&file.value)
            };
            let pem = std::fs::read(&path).map_err(|e| {
                format!(
                    "{}: SSLCertificateFile '{}': {e}",
                    file.location,
                    path.display()
                )
            })?;
            let chain = X509::stack_from_pem(&pem).map_err(|e| {
                format!(
                    "{}: SSLCertificateFile '{}': {e}",
                    file.location,
                    path.display()
                )
            })?;
            if chain.is_empty() {
                return Err(format!(
                    "{}: SSLCertificateFile '{}': no certificate in it",
                    file.location,
                    path.display()
                ));
            }
            chains.push((file.value.clone(), chain));
        }
        Ok(Certificates { chains })
    }

    /// For each of `hosts` (server list entries whose agents check the certificate): why an
    /// agent trusting `ca_pem` would refuse one of these certificates there. Hosts every
    /// certificate passes for are not in the map. `served` is the key type of the certificate
    /// the agent is served (what its replayed hello gets: `RSA` or `EC`); only certificates of
    /// that key type are judged. Unknown (`None`), it may be served either, so all must pass.
    pub fn untrusted<'a>(
        &self,
        ca_pem: &[u8],
        hosts: impl IntoIterator<Item = &'a str>,
        served: Option<openssl::pkey::Id>,
    ) -> Result<BTreeMap<String, String>, String> {
        let cas = X509::stack_from_pem(ca_pem).map_err(|e| format!("the agents' CA: {e}"))?;
        let chains: Vec<&(String, Vec<X509>)> = self
            .chains
            .iter()
            .filter(|(_, chain)| {
                served.is_none_or(|id| chain[0].public_key().is_ok_and(|key| key.id() == id))
            })
            .collect();
        let mut out = BTreeMap::new();
        for host in hosts {
            for (file, chain) in chains.iter().copied() {
                if let Some(why) = refusal(&cas, chain, host).map_err(|e| e.to_string())? {
                    out.insert(host.to_string(), format!("{file}: {why}"));
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// Whether `leaf` names `host` among its subject alternative names (a DNS name, with a
/// leading `*.` wildcard matching one label, or an IP address): whether this certificate is
/// the one agents connecting to `host` meet.
pub fn names_host(leaf: &X509Ref, host: &str) -> bool {
    let Some(names) = leaf.subject_alt_names() else {
        return false;
    };
    let ip: Option<IpAddr> = host.parse().ok();
    names.iter().any(|name| {
        if let (Some(ip), Some(bytes)) = (ip, name.ipaddress()) {
            return match ip {
                IpAddr::V4(v4) => bytes == v4.octets(),
                IpAddr::V6(v6) => bytes == v6.octets(),
            };
        }
        let Some(dns) = name.dnsname() else {
            return false;
        };
        if ip.is_some() {
            return false;
        }
        match dns.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(suffix)),
            None => dns.eq_ignore_ascii_case(host),
        }
    })
}

/// OpenSSL's verdict on `chain` for `host` against `cas`, in an admin's words; `None` when an
/// agent would accept it.
fn refusal(
    cas: &[X509],
    chain: &[X509],
    host: &str,
) -> Result<Option<String>, openssl::error::ErrorStack> {
    let mut store = X509StoreBuilder::new()?;
    for ca in cas {
        store.add_cert(ca.clone())?;
    }
    let mut param = X509VerifyParam::new()?;
    match host.parse::<IpAddr>() {
        Ok(ip) => param.set_ip(ip)?,
        Err(_) => param.set_host(host)?,
    }
    store.set_param(&param)?;
    let store = store.build();
    let mut intermediates = Stack::new()?;
    for cert in &chain[1..] {
        intermediates.push(cert.clone())?;
    }
    let mut context = X509StoreContext::new()?;
    let (ok, error) = context.init(&store, &chain[0], &intermediates, |c| {
        Ok((c.verify_cert()?, c.error()))
    })?;
    if ok {
        return Ok(None);
    }
    let raw = error.as_raw();
    use openssl_sys as ffi;
    let words = match raw {
        ffi::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | ffi::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
        | ffi::X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
        | ffi::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        | ffi::X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
        | ffi::X509_V_ERR_CERT_SIGNATURE_FAILURE => {
            format!(
                "it does not chain to the CA the agents trust ({})",
                error.error_string()
            )
        }
        ffi::X509_V_ERR_HOSTNAME_MISMATCH | ffi::X509_V_ERR_IP_ADDRESS_MISMATCH => {
            format!("it does not name '{host}', the host the agents connect to")
        }
        ffi::X509_V_ERR_CERT_HAS_EXPIRED => "it has expired".to_string(),
        ffi::X509_V_ERR_CERT_NOT_YET_VALID => "it is not valid yet".to_string(),
        _ => error.error_string().to_string(),
    };
    Ok(Some(words))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_tls::pki;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    }

    fn policy_with(certificate: &str) -> TlsPolicy {
        ward_tls::conf::listener_conf("test.conf", &format!("SSLCertificateFile {certificate}\n"))
            .policy
            .unwrap()
    }

    #[test]
    fn chain_and_name_are_checked_as_the_agent_checks_them() {
        let dir = tempfile::tempdir().unwrap();
        let ca = pki::new_ca("ward CA").unwrap();
        let other_ca = pki::new_ca("someone else's CA").unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let good = pki::new_server_cert(&ca, &["mgr1.example"], &[ip]).unwrap();
        let foreign = pki::new_server_cert(&other_ca, &["mgr1.example"], &[ip]).unwrap();
        let ca_pem = ca.cert_pem().unwrap();
        let good_file = write(dir.path(), "good.pem", &good.cert_pem().unwrap());
        let foreign_file = write(dir.path(), "foreign.pem", &foreign.cert_pem().unwrap());
        let hosts = ["mgr1.example", "127.0.0.1", "mgr2.example", "127.0.0.2"];

        let certificates = Certificates::load(&policy_with(&good_file), dir.path()).unwrap();
        let untrusted = certificates.untrusted(&ca_pem, hosts, None).unwrap();
        let names: Vec<&str> = untrusted.keys().map(String::as_str).collect();
        assert_eq!(names, ["127.0.0.2", "mgr2.example"]);
        assert!(untrusted["mgr2.example"].contains("does not name 'mgr2.example'"));

        let certificates = Certificates::load(&policy_with(&foreign_file), dir.path()).unwrap();
        let untrusted = certificates.untrusted(&ca_pem, hosts, None).unwrap();
        assert_eq!(untrusted.len(), 4);
        assert!(
            untrusted["mgr1.example"].contains("does not chain to the CA the agents trust"),
            "{}",
            untrusted["mgr1.example"]
        );
        let leaf = &good.cert;
        assert!(names_host(leaf, "mgr1.example") && names_host(leaf, "MGR1.example"));
        assert!(names_host(leaf, "127.0.0.1"));
        assert!(!names_host(leaf, "mgr2.example") && !names_host(leaf, "127.0.0.2"));
        // An agent of the other CA would trust it.
        let theirs = certificates
            .untrusted(&other_ca.cert_pem().unwrap(), ["mgr1.example"], None)
            .unwrap();
        assert!(theirs.is_empty(), "{theirs:?}");
    }

    /// Two certificates, each from its own root (ECDSA and RSA): an agent is judged by the
    /// one it is served. An agent that trusts only the ECDSA root refuses the RSA certificate;
    /// served the ECDSA one, it has no reason to; not knowing which, both must pass.
    #[test]
    fn each_agent_is_judged_by_the_certificate_it_is_served() {
        let dir = tempfile::tempdir().unwrap();
        let ca = pki::CaBundle::new("ward CA").unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let ec = pki::new_server_cert(&ca.ecdsa, &["mgr1.example"], &[ip]).unwrap();
        let rsa = pki::new_server_cert_of(
            pki::KeyType::Rsa2048,
            ca.signer(pki::KeyType::Rsa2048),
            &["mgr1.example"],
            &[ip],
        )
        .unwrap();
        let conf = format!(
            "SSLCertificateFile {}\nSSLCertificateFile {}\n",
            write(dir.path(), "ec.pem", &ec.cert_pem().unwrap()),
            write(dir.path(), "rsa.pem", &rsa.cert_pem().unwrap())
        );
        let policy = ward_tls::conf::listener_conf("t.conf", &conf)
            .policy
            .unwrap();
        let certificates = Certificates::load(&policy, dir.path()).unwrap();
        let ecdsa_root_only = ca.ecdsa.cert_pem().unwrap();
        let both = ca.cert_pem().unwrap();
        let judged = |trusted: &[u8], served| {
            certificates
                .untrusted(trusted, ["mgr1.example"], served)
                .unwrap()
                .len()
        };
        use openssl::pkey::Id;
        assert_eq!(judged(&ecdsa_root_only, Some(Id::EC)), 0);
        assert_eq!(judged(&ecdsa_root_only, Some(Id::RSA)), 1);
        assert_eq!(judged(&ecdsa_root_only, None), 1);
        assert_eq!(judged(&both, Some(Id::RSA)), 0);
        assert_eq!(judged(&both, None), 0);
    }

    #[test]
    fn a_missing_file_names_the_directive() {
        let dir = tempfile::tempdir().unwrap();
        let error = Certificates::load(&policy_with("nope.pem"), dir.path())
            .err()
            .unwrap();
        assert!(error.contains("test.conf:1: SSLCertificateFile"), "{error}");
    }
}
