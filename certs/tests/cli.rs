//! The `vigil-certs` binary end to end: a CA, a server and an agent
//! certificate, and a refusal to overwrite without `--force`. (Being an
//! integration test of this package also makes `cargo test --workspace`
//! build the binary, which the deploy tests run.)

use std::process::Command;

fn certs(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vigil-certs"))
        .args(args)
        .output()
        .expect("run vigil-certs")
}

#[test]
fn issues_a_pki_and_refuses_to_overwrite_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8 path");
    for args in [
        &["ca", "--dir", d][..],
        &["server", "--dir", d, "--name", "localhost"],
        &["agent", "--dir", d, "--agent-id", "api-1"],
    ] {
        let out = certs(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for file in ["ca.crt", "ca.key", "server.crt", "server.key"] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    let again = certs(&["ca", "--dir", d]);
    assert_eq!(again.status.code(), Some(1), "a second CA without --force");
    assert!(
        !String::from_utf8_lossy(&again.stderr).trim().is_empty(),
        "the refusal says why"
    );
}
