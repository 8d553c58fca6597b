//! Named compliance presets: each is just a proposed configuration (`SSLProtocol` and
//! `SSLCipherSuite` for TLS 1.2 and below, and the TLS 1.3 suites where the source names
//! them), with the document it follows. `ward tls preset list|show`, `ward tls plan --preset`
//! and `ward tls harden --preset` read them from here.

/// One preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub title: &'static str,
    /// The `SSLProtocol` words.
    pub protocol: &'static str,
    /// `SSLCipherSuite` (TLS 1.2 and below); `None` keeps the listener's.
    pub cipher_suite: Option<&'static str>,
    /// `SSLCipherSuite TLSv1.3 ...`; `None` keeps the listener's (OpenSSL's default, AES-GCM
    /// and ChaCha20-Poly1305).
    pub cipher_suite_tls13: Option<&'static str>,
    /// Where it comes from.
    pub source: &'static str,
    /// What an admin should know before choosing it.
    pub note: &'static str,
}

const MOZILLA_SOURCE: &str =
    "Mozilla Server Side TLS guidelines 5.7 (https://ssl-config.mozilla.org/guidelines/5.7.json, \
     https://wiki.mozilla.org/Security/Server_Side_TLS), Apache httpd generator output";

const MOZILLA_INTERMEDIATE_CIPHERS: &str =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:\
ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:\
DHE-RSA-CHACHA20-POLY1305";

/// Every preset ward knows, in the order `ward tls preset list` shows them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "mozilla-modern",
        title: "Mozilla modern: TLS 1.3 only",
        protocol: "-all +TLSv1.3",
        cipher_suite: None,
        cipher_suite_tls13: Some(
            "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
        ),
        source: MOZILLA_SOURCE,
        note: "no agent or browser older than TLS 1.3 can connect (Windows before 11 and Server \
               2022, Java before 11, OpenSSL before 1.1.1)",
    },
    Preset {
        name: "mozilla-intermediate",
        title: "Mozilla intermediate: TLS 1.2 and 1.3, forward-secret AEAD suites",
        protocol: "all -SSLv3 -TLSv1 -TLSv1.1",
        cipher_suite: Some(MOZILLA_INTERMEDIATE_CIPHERS),
        cipher_suite_tls13: None,
        source: MOZILLA_SOURCE,
        note: "clients that speak TLS 1.2 only with CBC or RSA key exchange suites (Windows 7 and \
               Server 2008 R2 without updates, Java 7) are refused",
    },
    Preset {
        name: "mozilla-old",
        title: "Mozilla old: TLS 1.0 to 1.3, with 3DES for Windows XP",
        protocol: "all -SSLv3",
        cipher_suite: Some(
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:\
ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:\
DHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:\
ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES256-SHA384:\
ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA:DHE-RSA-AES128-SHA256:DHE-RSA-AES256-SHA256:\
AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:AES256-SHA256:AES128-SHA:AES256-SHA:\
DES-CBC3-SHA",
        ),
        cipher_suite_tls13: None,
        source: MOZILLA_SOURCE,
        note:
            "serves the seed's Windows XP clients (TLS 1.0, RSA key exchange, 3DES) with the RSA \
               certificate; 3DES is open to Sweet32, so keep it for the legacy listener only",
    },
    Preset {
        name: "nist-800-52r2",
        title: "NIST SP 800-52 Rev. 2: TLS 1.2 and 1.3, approved suites only",
        protocol: "all -SSLv3 -TLSv1 -TLSv1.1",
        cipher_suite: Some(
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-CCM:\
ECDHE-ECDSA-AES256-CCM:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA256:\
ECDHE-RSA-AES256-SHA384:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384",
        ),
        cipher_suite_tls13: Some(
            "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_AES_128_CCM_SHA256",
        ),
        source: "NIST SP 800-52 Rev. 2 (August 2019), sections 3.1 (TLS 1.2 required, 1.3 \
                 supported, 1.0 and 1.1 not) and 3.3.1 (ephemeral key exchange, AES-GCM, \
                 AES-CCM and AES-CBC with SHA-2; ChaCha20-Poly1305 is not an approved suite)",
        note: "leaves out ChaCha20-Poly1305, which is not FIPS-approved; every client needs \
               ECDHE or DHE with AES",
    },
    Preset {
        name: "pci-dss-4",
        title: "PCI DSS 4.0: TLS 1.2 and 1.3, strong suites",
        protocol: "all -SSLv3 -TLSv1 -TLSv1.1",
        cipher_suite: Some(
            "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:ECDHE+AES256:ECDHE+AES128:!SHA1:!aNULL:!eNULL",
        ),
        cipher_suite_tls13: None,
        source: "PCI DSS v4.0 requirement 4.2.1 (strong cryptography for cardholder data over \
                 open networks) and the PCI SSC information supplement 'Migrating from SSL and \
                 Early TLS' (no SSL or TLS 1.0; TLS 1.2 or later recommended)",
        note: "forward-secret suites only, no SHA-1 MACs, no 3DES or RC4",
    },
];

/// The preset named `name`.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// The names, for an error message.
pub fn names() -> String {
    PRESETS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_a_valid_configuration_for_this_openssl() {
        use openssl::ssl::{SslContextBuilder, SslMethod};
        let mut seen = std::collections::HashSet::new();
        for preset in PRESETS {
            assert!(seen.insert(preset.name), "{} twice", preset.name);
            assert!(find(preset.name).is_some());
            let words = ward_tls::protocol::split_words(preset.protocol);
            ward_tls::parse_ssl_protocol(&words).unwrap_or_else(|e| panic!("{}: {e}", preset.name));
            let mut builder = SslContextBuilder::new(SslMethod::tls_server()).unwrap();
            if let Some(list) = preset.cipher_suite {
                builder
                    .set_cipher_list(&ward_tls::conf::apache_cipher_list(list))
                    .unwrap_or_else(|e| panic!("{}: {e}", preset.name));
            }
            if let Some(list) = preset.cipher_suite_tls13 {
                builder
                    .set_ciphersuites(list)
                    .unwrap_or_else(|e| panic!("{}: {e}", preset.name));
            }
            assert!(!preset.source.is_empty() && !preset.note.is_empty());
        }
        assert!(find("mozilla-ancient").is_none());
        assert!(names().contains("nist-800-52r2"));
    }
}
