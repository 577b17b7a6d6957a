//! What deb.rs works with: the packages cargo-deb builds from the binaries the
//! tests run (built once per test run, shared by the tests), what dpkg-deb
//! reads from them, and dpkg on this machine, serialised by a lock file and
//! put back to its state without the packages before and after use.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vigil_tests::binary;

use super::layout::repo;

pub const AGENT: &str = "vigil-agent";
pub const AGGREGATOR: &str = "vigil-aggregator";
pub const PACKAGES: [&str; 2] = [AGENT, AGGREGATOR];
/// The system user both packages create (deploy/systemd/vigil.sysusers.conf).
pub const USER: &str = "vigil";
/// Its passwd entry after the user and group ids.
const USER_ENTRY_TAIL: &str = "Vigil monitoring:/var/lib/vigil:/usr/sbin/nologin";
/// The keys' folder both packages' postinst make.
pub const CERTS: &str = "/etc/vigil/certs";
/// Marks keys the install test put in [`CERTS`] (purge leaves them there), so
/// that a cleanup may delete them.
pub const CERTS_MARKER: &str = ".vigil-deb-test";
/// Every path the packages or their scripts create outside /usr.
pub const MACHINE_PATHS: [&str; 3] = ["/etc/vigil", "/var/lib/vigil", "/var/lib/vigil-agent"];

/// A finished command: its exit code (None: killed) and stdout + stderr.
pub struct Run {
    pub code: Option<i32>,
    pub out: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `cmd` with no input; panics only if it cannot start at all.
pub fn run(cmd: &mut Command) -> Run {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{:?} could not start: {e}", cmd.get_program()));
    Run {
        code: out.status.code(),
        out: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns the output.
pub fn run_ok(cmd: &mut Command) -> String {
    let r = run(cmd);
    assert!(r.ok(), "{cmd:?} exited {:?}:\n{}", r.code, r.out);
    r.out
}

/// `cargo` as cargo test was started with.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Fails with what to install unless cargo-deb, dpkg and dpkg-deb run here.
pub fn require_tools() {
    let probes: [(&str, Command, &str); 3] = [
        (
            "cargo-deb",
            {
                let mut c = cargo();
                c.args(["deb", "--version"]);
                c
            },
            "tests/setup.sh installs it: cargo install cargo-deb --version 3.8.0 --locked",
        ),
        (
            "dpkg",
            version_of("dpkg"),
            "it is Debian's package manager: run the tests on Debian or Ubuntu",
        ),
        (
            "dpkg-deb",
            version_of("dpkg-deb"),
            "it ships in Debian's dpkg package",
        ),
    ];
    for (name, mut cmd, hint) in probes {
        match cmd.stdin(Stdio::null()).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "{name} is not usable ({}): {}{}\n{hint}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("{name} is not installed ({e}); {hint}"),
        }
    }
}

fn version_of(program: &str) -> Command {
    let mut c = Command::new(program);
    c.arg("--version");
    c
}

/// The .deb of `package`, built once per test run from the binaries the tests
/// run (`cargo deb --no-build` with the tests' profile) into
/// target/deb-test/<package>/.
pub fn deb(package: &str) -> PathBuf {
    deb_or_error(package).unwrap_or_else(|e| panic!("{e}"))
}

/// [`deb`], or why it could not be built.
fn deb_or_error(package: &str) -> Result<PathBuf, String> {
    static AGENT_DEB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static AGGREGATOR_DEB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let cell = match package {
        AGENT => &AGENT_DEB,
        AGGREGATOR => &AGGREGATOR_DEB,
        other => panic!("no package {other}"),
    };
    cell.get_or_init(|| build(package)).clone()
}

fn build(package: &str) -> Result<PathBuf, String> {
    require_tools();
    // target/<profile dir>/vigil-agent: the binaries the other tests run.
    let bin = binary(package);
    if package == AGGREGATOR {
        binary("vigil-certs");
    }
    let profile_dir = bin.parent().ok_or("binary has no folder")?;
    let target = profile_dir.parent().ok_or("profile folder has no parent")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(other) => other.to_string(),
        None => return Err(format!("{}: no profile folder", bin.display())),
    };
    let out_dir = target.join("deb-test").join(package);
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    // --fast: xz's quick level; the test needs the files, not the smallest
    // archive. --quiet: cargo-deb warns that it is meant for release builds.
    let r = run(cargo()
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", target)
        .args([
            "deb",
            "--package",
            package,
            "--no-build",
            "--fast",
            "--quiet",
        ])
        .args(["--profile", &profile, "--output"])
        .arg(&out_dir));
    if !r.ok() {
        return Err(format!(
            "cargo deb -p {package} exited {:?}:\n{}",
            r.code, r.out
        ));
    }
    let debs: Vec<PathBuf> = std::fs::read_dir(&out_dir)
        .map_err(|e| format!("{}: {e}", out_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    match debs.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!("cargo deb -p {package} made {debs:?}:\n{}", r.out)),
    }
}

/// `dpkg-deb -c`: (permissions, owner, path) of every entry but folders.
pub fn contents(deb: &Path) -> Vec<(String, String, String)> {
    let text = run_ok(Command::new("dpkg-deb").arg("--contents").arg(deb));
    text.lines()
        .filter(|l| !l.starts_with('d'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 6, "dpkg-deb -c line: {l}");
            (f[0].to_string(), f[1].to_string(), f[5].to_string())
        })
        .collect()
}

/// `dpkg-deb -f`: one control field.
pub fn field(deb: &Path, name: &str) -> String {
    run_ok(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))
        .trim()
        .to_string()
}

/// `dpkg-deb -e` and `-x` into `dir`: (control folder, files root).
pub fn unpack(deb: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let (control, root) = (dir.join("DEBIAN"), dir.join("root"));
    run_ok(
        Command::new("dpkg-deb")
            .arg("--control")
            .arg(deb)
            .arg(&control),
    );
    run_ok(
        Command::new("dpkg-deb")
            .arg("--extract")
            .arg(deb)
            .arg(&root),
    );
    (control, root)
}

/// Holds this machine's dpkg for one test: a lock file shared by every run of
/// this test on the machine (another worktree's included), and the packages
/// purged and the user removed when taken and when dropped, also on a panic.
pub struct Machine {
    _lock: std::fs::File,
}

impl Machine {
    pub fn take() -> Machine {
        assert!(
            rustix::process::geteuid().is_root(),
            "installing the packages needs root (dpkg -i); run the tests as root, as CI does"
        );
        require_tools();
        // The machine's lock folder; made here where no init system did.
        std::fs::create_dir_all("/run/lock").expect("/run/lock");
        let path = "/run/lock/vigil-deb-test.lock";
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .unwrap_or_else(|e| panic!("flock {path}: {e}"));
        let m = Machine { _lock: lock };
        // A run that was interrupted left its packages and user behind.
        if let Err(e) = restore() {
            panic!("could not clean up after an earlier run: {e}");
        }
        for p in MACHINE_PATHS {
            assert!(
                !Path::new(p).exists(),
                "{p} exists with no Vigil package installed: something other than this \
                 test made it; move it away, then run the test again"
            );
        }
        m
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Err(e) = restore() {
            if std::thread::panicking() {
                eprintln!("deb test cleanup: {e}");
            } else {
                panic!("deb test cleanup: {e}");
            }
        }
    }
}

/// Purges both packages in whatever state they are, then deletes the keys the
/// install test put in /etc/vigil/certs and the user the packages leave
/// behind (only when its passwd entry is theirs).
fn restore() -> Result<(), String> {
    for package in PACKAGES {
        let state = status(package);
        if state.is_empty() {
            continue;
        }
        if state != "ii " && state != "rc " {
            // An install cut short (half-installed, unpacked, half-configured):
            // dpkg does not yet list the files it unpacked (*.dpkg-new), so a
            // purge would leave them. Its own advice is to reinstall, after
            // which it knows them all.
            let path = deb_or_error(package)?;
            let r = dpkg(&["--install", &path.display().to_string()]);
            if !r.ok() {
                return Err(format!(
                    "reinstalling {package} ({state}): {:?}\n{}",
                    r.code, r.out
                ));
            }
        }
        let r = dpkg(&["--purge", "--force-remove-reinstreq", package]);
        if !r.ok() {
            return Err(format!("dpkg --purge {package}: {:?}\n{}", r.code, r.out));
        }
        if !status(package).is_empty() {
            return Err(format!("{package} is still known to dpkg after --purge"));
        }
    }
    // Keys the test put in by hand, as an operator would: purge leaves them.
    if Path::new(CERTS).join(CERTS_MARKER).exists() {
        std::fs::remove_dir_all(CERTS).map_err(|e| format!("{CERTS}: {e}"))?;
        let _ = std::fs::remove_dir("/etc/vigil");
    }
    if let Some((_, _, tail)) = user() {
        if tail != USER_ENTRY_TAIL {
            return Err(format!(
                "a user {USER} exists that the packages did not create ({tail}); \
                 this test needs the name"
            ));
        }
        let r = run(Command::new("userdel").arg(USER));
        if !r.ok() {
            return Err(format!("userdel {USER}: {:?}\n{}", r.code, r.out));
        }
    }
    if run(Command::new("getent").args(["group", USER])).ok() {
        let r = run(Command::new("groupdel").arg(USER));
        if !r.ok() {
            return Err(format!("groupdel {USER}: {:?}\n{}", r.code, r.out));
        }
    }
    Ok(())
}

/// `dpkg ARGS` without questions (a changed conffile is kept), waiting while
/// another dpkg or apt holds dpkg's lock. After an interrupted dpkg run, dpkg
/// refuses everything until `dpkg --configure -a`: that is run, then `args`
/// again.
pub fn dpkg(args: &[&str]) -> Run {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut configured = false;
    loop {
        let r = run(Command::new("dpkg")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["--force-confdef", "--force-confold"])
            .args(args));
        if r.ok() {
            return r;
        }
        if r.out.contains("dpkg --configure -a") && !configured {
            configured = true;
            run(Command::new("dpkg").args(["--configure", "-a"]));
            continue;
        }
        let locked = r.out.contains("locked by another process")
            || r.out.contains("Resource temporarily unavailable");
        if !locked || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// dpkg's status of `package` ("ii ", "rc ", ...), empty when dpkg does not
/// know it.
pub fn status(package: &str) -> String {
    let r = run(Command::new("dpkg-query").args([
        "--show",
        "--showformat=${db:Status-Abbrev}",
        package,
    ]));
    if r.ok() { r.out } else { String::new() }
}

/// The user vigil: (uid, gid, the rest of its passwd entry), if it exists.
pub fn user() -> Option<(u32, u32, String)> {
    let r = run(Command::new("getent").args(["passwd", USER]));
    if !r.ok() {
        return None;
    }
    let f: Vec<&str> = r.out.trim().splitn(5, ':').collect();
    assert_eq!(f.len(), 5, "passwd entry: {}", r.out);
    let id = |s: &str| s.parse::<u32>().unwrap_or_else(|e| panic!("id {s}: {e}"));
    Some((id(f[2]), id(f[3]), f[4].to_string()))
}

/// (mode bits, uid, gid) of `path`, without following a symbolic link.
pub fn stat(path: &str) -> (u32, u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

/// Every file or link under systemd's folders and deb-systemd-helper's state
/// whose name starts with `unit` (enablement links, masks, state files).
pub fn systemd_traces(unit: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let roots = [
        "/etc/systemd/system",
        "/var/lib/systemd/deb-systemd-helper-enabled",
        "/var/lib/systemd/deb-systemd-helper-masked",
        "/usr/lib/systemd/system",
    ];
    let mut stack: Vec<PathBuf> = roots.iter().map(PathBuf::from).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if e.file_name().to_string_lossy().starts_with(unit) {
                found.push(path);
            } else if is_dir {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}
