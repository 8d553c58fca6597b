//! The conf files ward ships: the seed's starting point, `SSLProtocol all -SSLv2 -SSLv3`, with
//! a comment on every directive.

/// `conf/ssl/ssl.conf`: the console listener (port 8445).
pub const SSL_CONF: &str = include_str!("../conf/ssl.conf");

/// `conf/ssl/sslforclients.conf`: the clients listener (port 443).
pub const SSL_FOR_CLIENTS_CONF: &str = include_str!("../conf/sslforclients.conf");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::{listener_conf, Severity};

    #[test]
    fn shipped_files_hold_the_seed_starting_point() {
        for (name, text) in [
            ("ssl.conf", SSL_CONF),
            ("sslforclients.conf", SSL_FOR_CLIENTS_CONF),
        ] {
            let conf = listener_conf(name, text);
            assert!(
                conf.diagnostics
                    .iter()
                    .all(|d| d.severity == Severity::Note),
                "{name}: {:?}",
                conf.diagnostics
            );
            let policy = conf.policy.unwrap();
            // The clients listener keeps what the seed's legacy agents need; the console
            // serves admins only and starts at TLS 1.2, as the vendor's manager does from
            // 14.3 RU2 on.
            let (range, line) = match name {
                "ssl.conf" => (
                    "TLSv1.2-TLSv1.3",
                    "\nSSLProtocol all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1\n",
                ),
                _ => ("TLSv1-TLSv1.3", "\nSSLProtocol all -SSLv2 -SSLv3\n"),
            };
            assert_eq!(policy.protocol.range.to_string(), range, "{name}");
            assert!(text.contains(line), "{name}");
            assert_eq!(policy.certificate_files[0].value, "certs/server.pem");
        }
    }
}
