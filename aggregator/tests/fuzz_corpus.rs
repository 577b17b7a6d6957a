//! Replays the committed fuzz corpora (fuzz/corpus/<target>/) through the
//! same functions the libFuzzer targets call, on stable with the normal
//! test suite: a regression in a parser of untrusted input that an input
//! there once exercised fails here without nightly or cargo-fuzz
//! (docs/fuzzing.md).

#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod harness;

use std::path::PathBuf;

/// Runs every input of `target`'s corpus; `deep` says whether an input
/// reached the target's deepest stage, and at least one must (so a corpus
/// that no longer exercises the real path fails too).
fn replay<T>(target: &str, run: fn(&[u8]) -> T, deep: fn(&T) -> bool) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()));
    let (mut n, mut deep_ones) = (0, 0);
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let data = std::fs::read(&path).expect("a corpus file");
        let outcome = std::panic::catch_unwind(|| run(&data))
            .unwrap_or_else(|_| panic!("{target} panicked on {}", path.display()));
        n += 1;
        deep_ones += usize::from(deep(&outcome));
    }
    assert!(n > 0, "the corpus {} is empty", dir.display());
    assert!(
        deep_ones > 0,
        "no input of {} reaches the deepest stage",
        dir.display()
    );
}

#[test]
fn frame_corpus() {
    replay("frame", harness::frame, |verified| *verified);
}

#[test]
fn exposition_corpus() {
    replay("exposition", harness::exposition, |samples| *samples > 0);
}

#[test]
fn remote_write_corpus() {
    replay("remote_write", harness::remote_write, |accepted| {
        *accepted > 0
    });
}

#[test]
fn promql_corpus() {
    replay("promql", harness::promql, |non_empty| *non_empty);
}
