#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_tls::hello::parse_client_hello;

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = parse_client_hello(data) {
        let _ = hello.offered_versions();
        let _ = hello.max_version();
    }
});
