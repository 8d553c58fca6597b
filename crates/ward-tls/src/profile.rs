//! Client profiles: what real TLS stacks offer, so that an agent or a simulated fleet can
//! imitate them and a rehearsal is honest. Each profile is the versions, the TLS <= 1.2 suites
//! in the stack's order, the key-exchange groups and whether it sends SNI. With no elliptic
//! curve suite below TLS 1.3, OpenSSL sends no EC extensions, as those stacks did not.
//!
//! Sources: the stacks' documented defaults (Windows XP SP3 schannel with IE 8; Windows Server
//! 2003 with KB948963's AES suites; Windows 7's schannel; Java SE 6's JSSE; OpenSSL 0.9.8's
//! DEFAULT). RC4 suites are listed as those stacks offered them; ward's OpenSSL 3.5 has no RC4
//! in its default provider, so they are simply not offered.

use crate::context::{ClientTls, ServerVerification};
use crate::protocol::TlsVersion;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientProfile {
    pub name: &'static str,
    pub about: &'static str,
    pub min: TlsVersion,
    pub max: TlsVersion,
    /// The TLS <= 1.2 suites, in the stack's order (`None`: OpenSSL's default).
    pub ciphers: Option<&'static str>,
    /// The key-exchange groups (`None`: ward's default, post-quantum first).
    pub groups: Option<&'static str>,
    /// Whether it sends the server name (SNI).
    pub sni: bool,
}

pub const CLIENT_PROFILES: &[ClientProfile] = &[
    ClientProfile {
        name: "xp-ie8",
        about: "Windows XP SP3, IE 8 / schannel: TLS 1.0, RSA key exchange with RC4 and 3DES, no \
                elliptic curves, no SNI",
        min: TlsVersion::Tls1_0,
        max: TlsVersion::Tls1_0,
        ciphers: Some("RC4-MD5:RC4-SHA:DES-CBC3-SHA:@SECLEVEL=0"),
        groups: None,
        sni: false,
    },
    ClientProfile {
        name: "win2003-aes",
        about: "Windows Server 2003 with the AES update (KB948963): TLS 1.0, RSA key exchange \
                with AES-CBC, RC4 and 3DES, no elliptic curves, no SNI",
        min: TlsVersion::Tls1_0,
        max: TlsVersion::Tls1_0,
        ciphers: Some("AES128-SHA:AES256-SHA:RC4-SHA:DES-CBC3-SHA:RC4-MD5:@SECLEVEL=0"),
        groups: None,
        sni: false,
    },
    ClientProfile {
        name: "win7-default",
        about: "Windows 7 schannel as shipped: TLS 1.0, ECDHE and RSA key exchange with \
                AES-CBC, P-256 and P-384, SNI",
        min: TlsVersion::Tls1_0,
        max: TlsVersion::Tls1_0,
        ciphers: Some(
            "ECDHE-RSA-AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:\
             ECDHE-ECDSA-AES128-SHA:AES256-SHA:AES128-SHA:RC4-SHA:DES-CBC3-SHA:RC4-MD5:\
             @SECLEVEL=0",
        ),
        groups: Some("P-256:P-384"),
        sni: true,
    },
    ClientProfile {
        name: "java6",
        about: "Java SE 6 (JSSE): TLS 1.0, RSA and DHE key exchange with AES-CBC, RC4 and 3DES, \
                no elliptic curves, no SNI",
        min: TlsVersion::Tls1_0,
        max: TlsVersion::Tls1_0,
        ciphers: Some(
            "RC4-MD5:RC4-SHA:AES128-SHA:DHE-RSA-AES128-SHA:DES-CBC3-SHA:\
             EDH-RSA-DES-CBC3-SHA:@SECLEVEL=0",
        ),
        groups: None,
        sni: false,
    },
    ClientProfile {
        name: "openssl-0.9.8",
        about: "OpenSSL 0.9.8 (e.g. RHEL 5): TLS 1.0, DHE and RSA key exchange with AES-CBC, \
                3DES and RC4, no elliptic curves, SNI",
        min: TlsVersion::Tls1_0,
        max: TlsVersion::Tls1_0,
        ciphers: Some(
            "DHE-RSA-AES256-SHA:AES256-SHA:EDH-RSA-DES-CBC3-SHA:DES-CBC3-SHA:\
             DHE-RSA-AES128-SHA:AES128-SHA:RC4-SHA:RC4-MD5:@SECLEVEL=0",
        ),
        groups: None,
        sni: true,
    },
    ClientProfile {
        name: "modern",
        about: "ward's own agent: TLS 1.2 and 1.3, X25519MLKEM768 first, SNI",
        min: TlsVersion::Tls1_2,
        max: TlsVersion::Tls1_3,
        ciphers: None,
        groups: None,
        sni: true,
    },
];

/// The profile called `name`.
pub fn client_profile(name: &str) -> Option<&'static ClientProfile> {
    CLIENT_PROFILES.iter().find(|p| p.name == name)
}

/// The names of every profile, for error messages.
pub fn profile_names() -> String {
    CLIENT_PROFILES
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ClientProfile {
    /// The client TLS of this profile, checking the server as `verification` says.
    pub fn client_tls(&self, verification: ServerVerification) -> ClientTls {
        ClientTls {
            min: Some(self.min),
            max: Some(self.max),
            verification,
            cipher_list: self.ciphers.map(str::to_string),
        }
    }

    /// The versions it can speak, lowest first.
    pub fn versions(&self) -> impl Iterator<Item = TlsVersion> + '_ {
        TlsVersion::ALL
            .into_iter()
            .filter(|v| *v >= self.min && *v <= self.max)
    }

    /// Sets its groups on a connector (ward's default is already set when it has none).
    pub fn apply_groups(
        &self,
        builder: &mut openssl::ssl::SslConnectorBuilder,
    ) -> Result<(), openssl::error::ErrorStack> {
        match self.groups {
            Some(groups) => builder.set_groups_list(groups),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::connector_builder;

    #[test]
    fn every_profile_builds_on_wards_openssl() {
        for profile in CLIENT_PROFILES {
            let mut builder = connector_builder(&profile.client_tls(ServerVerification::None))
                .unwrap_or_else(|e| panic!("{}: {e}", profile.name));
            profile
                .apply_groups(&mut builder)
                .unwrap_or_else(|e| panic!("{}: {e}", profile.name));
        }
        assert_eq!(client_profile("xp-ie8").unwrap().max, TlsVersion::Tls1_0);
        assert!(client_profile("xp").is_none());
        assert!(profile_names().starts_with("xp-ie8, win2003-aes"));
    }
}
