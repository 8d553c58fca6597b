//! Tells the code whether openssl-sys linked the OpenSSL it vendors (`cfg(ward_vendored)`),
//! from what openssl-sys's build script reports to its dependents.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ward_vendored)");
    println!("cargo::rerun-if-env-changed=DEP_OPENSSL_VENDORED");
    if std::env::var_os("DEP_OPENSSL_VENDORED").is_some() {
        println!("cargo::rustc-cfg=ward_vendored");
    }
}
