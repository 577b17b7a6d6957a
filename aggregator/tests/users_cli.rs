//! `create-user` and `reset-password` through the real binary: a piped
//! password is used as given, otherwise one is generated and printed once;
//! only the Argon2id hash is stored; bad names, roles and passwords fail
//! with a clear message.

mod cli_support;

use std::io::Write;
use std::process::{Command, Stdio};

use vigil_aggregator::http::session::password;
use vigil_aggregator::store::users;

fn run(
    args: &[&str],
    config: &std::path::Path,
    stdin: Option<&str>,
) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil-aggregator"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    let out = child.wait_with_output().expect("finishes");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn stored_hash(dir: &std::path::Path, name: &str) -> Option<users::UserRecord> {
    let store = vigil_aggregator::store::open("sqlite:vigil.db", dir, 1).expect("open");
    users::user(&store.db(), name).await.expect("read")
}

#[tokio::test]
async fn users_are_created_and_passwords_reset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let config = cli_support::minimal_config(d);

    // Piped password.
    let (code, out, err) = run(
        &["create-user", "--name", "ann", "--role", "operator"],
        &config,
        Some("a piped password here\n"),
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.trim(), "created user ann (role operator)");
    let ann = stored_hash(d, "ann").await.expect("stored");
    assert_eq!(ann.role, "operator");
    assert!(ann.password_hash.starts_with("$argon2id$"));
    assert!(!ann.password_hash.contains("piped"));
    assert!(password::verify("a piped password here".into(), Some(ann.password_hash)).await);

    // No stdin: generated and printed once.
    let (code, out, err) = run(&["create-user", "--name", "bob"], &config, None);
    assert_eq!(code, Some(0), "{err}");
    let generated = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("password printed")
        .to_string();
    assert!(out.contains("role viewer"), "{out}");
    let bob = stored_hash(d, "bob").await.expect("stored");
    assert!(password::verify(generated.clone(), Some(bob.password_hash.clone())).await);

    // Errors.
    for (args, stdin, needle) in [
        (
            vec!["create-user", "--name", "ann"],
            Some("another password!\n"),
            "already exists",
        ),
        (
            vec!["create-user", "--name", "x y"],
            None,
            "invalid user name",
        ),
        (
            vec!["create-user", "--name", "cat", "--role", "root"],
            None,
            "unknown role \"root\"",
        ),
        (
            vec!["create-user", "--name", "cat"],
            Some("short\n"),
            "at least 12 characters",
        ),
        (
            vec!["reset-password", "--name", "nobody"],
            None,
            "no user named \"nobody\"",
        ),
        (
            vec!["reset-password", "--name", "bob"],
            Some("short\n"),
            "at least 12 characters",
        ),
    ] {
        let (code, _, err) = run(&args, &config, stdin);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
    }

    // Reset: piped, then generated.
    let (code, out, err) = run(
        &["reset-password", "--name", "bob"],
        &config,
        Some("bob's new password\n"),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("password of bob reset"), "{out}");
    assert!(
        !out.contains("password: "),
        "a piped password is not echoed"
    );
    let bob = stored_hash(d, "bob").await.expect("stored");
    assert!(password::verify("bob's new password".into(), Some(bob.password_hash.clone())).await);
    assert!(!password::verify(generated, Some(bob.password_hash)).await);
    let (code, out, err) = run(&["reset-password", "--name", "bob"], &config, None);
    assert_eq!(code, Some(0), "{err}");
    let again = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("generated password printed");
    let bob = stored_hash(d, "bob").await.expect("stored");
    assert!(password::verify(again.to_string(), Some(bob.password_hash)).await);
}
