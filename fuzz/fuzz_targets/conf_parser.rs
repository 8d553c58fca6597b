#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_tls::conf::listener_conf;
use ward_tls::edit::replace_ssl_protocol;

const NEW_ARGS: &str = "all -SSLv2 -SSLv3 -TLSv1 -TLSv1.1";
const MARKER: &str = "#:marker#";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    // The parser and the policy decision must accept any text without panicking.
    let _ = listener_conf("fuzz.conf", &text);

    // Invariant of the editor: after an edit, the SSLProtocol that applies is the new value.
    if let Ok(Some(new_text)) = replace_ssl_protocol("fuzz.conf", &text, NEW_ARGS, MARKER) {
        let edited = listener_conf("fuzz.conf", &new_text);
        let Some(policy) = edited.policy.as_ref() else {
            panic!(
                "edited file has errors: {:?}\n--- input ---\n{text:?}\n--- edited ---\n{new_text:?}",
                edited.diagnostics
            );
        };
        let range = policy.protocol.range.to_string();
        assert_eq!(
            range, "TLSv1.2-TLSv1.3",
            "edited file does not apply the new SSLProtocol\n--- input ---\n{text:?}\n--- edited ---\n{new_text:?}"
        );
    }
});
