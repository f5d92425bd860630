//! The Debian package for real: `scripts/package` builds it around the binary the tests
//! built, `dpkg -i` installs it on this machine (a `vitalwatch` user, /var/lib/vitalwatch
//! 0700, the unit, the config), `systemd-analyze verify` checks the installed unit, and the
//! packaged binary is started as the unit would start it — as the `vitalwatch` user with the
//! packaged configuration — since systemd is not PID 1 here. It tells $NOTIFY_SOCKET it is
//! ready (the unit is `Type=notify`) and `vitalwatch probe` finds it alive. Purged afterwards.

use super::{repo, run_ok};
use crate::support::{Guarded, bin};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `command` as root: directly when we are root, through `sudo -n` otherwise.
fn as_root(program: &str) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        Command::new(program)
    } else {
        let mut command = Command::new("sudo");
        command.args(["-n", program]);
        command
    }
}

/// Removes the package and the state it created, whatever the test's outcome.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = as_root("dpkg").args(["--purge", "vitalwatch"]).output();
        // The package keeps patient data on purge by design; this test's data is its own.
        let _ = as_root("rm").args(["-rf", "/var/lib/vitalwatch"]).output();
    }
}

#[test]
fn debian_package_installs_and_its_unit_command_serves() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        Command::new(repo().join("scripts/package"))
            .args(["--binary", bin(), "--compression", "none", "--out"])
            .arg(dir.path()),
    );
    let deb = out
        .lines()
        .last()
        .expect("scripts/package prints the .deb's path")
        .trim();
    assert!(Path::new(deb).exists(), "{out}");

    let _installed = Installed;
    run_ok(as_root("dpkg").args(["-i", deb]));
    let version = run_ok(Command::new("/usr/bin/vitalwatch").arg("--version"));
    assert_eq!(
        version.trim(),
        format!("vitalwatch {}", env!("CARGO_PKG_VERSION"))
    );
    run_ok(
        Command::new("systemd-analyze").args(["verify", "/lib/systemd/system/vitalwatch.service"]),
    );
    let state =
        std::fs::metadata("/var/lib/vitalwatch").expect("the package creates its state directory");
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(state.permissions().mode() & 0o777, 0o700);
        let passwd = run_ok(Command::new("getent").args(["passwd", "vitalwatch"]));
        let uid: u32 = passwd.split(':').nth(2).unwrap().parse().unwrap();
        assert_eq!(
            state.uid(),
            uid,
            "/var/lib/vitalwatch belongs to the vitalwatch user"
        );
    }

    // The unit's ExecStart, as its User=, with a notify socket the way systemd passes one.
    let notify_dir = tempfile::tempdir().unwrap();
    super::set_mode(notify_dir.path(), 0o755);
    let socket_path = notify_dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    super::set_mode(&socket_path, 0o777);
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let unit = std::fs::read_to_string("/lib/systemd/system/vitalwatch.service").unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart");
    let mut words = exec.split_whitespace();
    let mut command = as_root("runuser");
    command
        .args(["-u", "vitalwatch", "--"])
        .args(words.by_ref())
        // Free loopback ports instead of the packaged 0.0.0.0 defaults (flags win over the file).
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--dashboard-addr",
            "127.0.0.1:0",
        ])
        .args(["--mqtts-addr", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &socket_path)
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut server = Guarded::spawn(&mut command);
    let mut stdout = server.lines();
    let api = stdout
        .find(Duration::from_secs(60), |l| {
            l.strip_prefix("listening api=")
                .map(|a| a.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("the packaged server did not start: {:?}", stdout.seen()));
    let mut buffer = [0u8; 512];
    let n = socket
        .recv(&mut buffer)
        .expect("no sd_notify message within 60 s");
    let message = String::from_utf8_lossy(&buffer[..n]);
    assert!(
        message.lines().any(|l| l == "READY=1"),
        "sd_notify sent {message:?}"
    );

    let port = api.rsplit(':').next().unwrap();
    let probe = run_ok(
        as_root("runuser")
            .args([
                "-u",
                "vitalwatch",
                "--",
                "/usr/bin/vitalwatch",
                "probe",
                "--config",
            ])
            .arg("/etc/vitalwatch/vitalwatch.toml")
            .arg("--url")
            .arg(format!("https://localhost:{port}/health")),
    );
    assert!(probe.starts_with("ok 200"), "{probe}");
    assert!(
        Path::new("/var/lib/vitalwatch/anomalies.db").exists(),
        "the packaged config puts the database in the state directory"
    );
    server.stop("TERM", Duration::from_secs(30));
}
