//! Mail to the owner when a job ends, through a REAL local MTA: the `sendmail` of the
//! machine (CI installs Debian's `dma`, which delivers to /var/mail/USER with no daemon).
//! The test reads the delivered mailbox. Without an MTA it says SKIPPED.

mod support;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};
use support::{TestSpool, wait_until};

const SENDMAIL: &str = "/usr/sbin/sendmail";

fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name
}

/// The messages of an mbox whose Subject has `needle`.
fn messages_with(mbox: &Path, needle: &str) -> Vec<String> {
    let text = fs::read_to_string(mbox).unwrap_or_default();
    text.split("\nFrom ")
        .filter(|m| {
            m.lines()
                .take_while(|l| !l.is_empty())
                .any(|l| l.starts_with("Subject:") && l.contains(needle))
        })
        .map(String::from)
        .collect()
}

fn mta_or_skip(test: &str) -> bool {
    if Path::new(SENDMAIL).exists() && support::root_or_skip(test, "it reads /var/mail") {
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: no MTA at {SENDMAIL} (CI installs dma: apt-get install dma)"
    );
    false
}

#[test]
fn owners_get_mail_through_the_local_mta_as_they_chose() {
    if !mta_or_skip("owners_get_mail_through_the_local_mta_as_they_chose") {
        return;
    }
    // Package names of this run only: the mailbox is the machine's.
    let tag = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        % 1_000_000_000_000;
    let [bad, good, always, quiet, last] =
        ["mtbad", "mtgood", "mtalways", "mtquiet", "mtlast"].map(|p| format!("{p}{tag}"));
    let mut s = TestSpool::with_config("mail = \"failures\"\n");
    s.env
        .push(("SPACK_FAKE_FAIL".into(), format!("{bad},{quiet}")));
    s.ok(&["submit", &format!("{bad}@1.2 +shared")]);
    s.ok(&["submit", &good]);
    s.ok(&["submit", &always, "--mail", "always"]);
    s.ok(&["submit", &quiet, "--mail", "never"]);
    // A job file may say it too.
    s.drop_file(
        "last.toml",
        &format!("spec = \"{last}\"\nmail = \"always\"\n"),
    );
    let out = s.drain();
    let worker_log = String::from_utf8_lossy(&out.stderr).to_string();
    let mbox = Path::new("/var/mail").join(me());
    wait_until("the last mail", Duration::from_secs(30), || {
        !messages_with(&mbox, &last).is_empty()
    });
    // Intake numbers the files in its own order: find each job's name.
    let name_of = |pkg: &str| {
        ["done", "failed"]
            .iter()
            .flat_map(|d| s.ls(d))
            .find(|f| f.ends_with(&format!("-{pkg}.toml")))
            .unwrap()
            .trim_end_matches(".toml")
            .to_string()
    };
    let failed = messages_with(&mbox, &bad);
    assert_eq!(failed.len(), 1, "{worker_log}");
    let m = &failed[0];
    let (headers, body) = m.split_once("\n\n").unwrap();
    let header = |name: &str| {
        headers
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {headers}"))
    };
    assert_eq!(header("To"), me());
    assert_eq!(
        header("Subject"),
        format!(
            "[spack-installer] {} failed: {bad}@1.2 +shared",
            name_of(&bad)
        )
    );
    assert_eq!(header("Auto-Submitted"), "auto-generated");
    let log = s.path(&format!("logs/{}.log", name_of(&bad)));
    for want in [
        "Reason:    spack exited with code 1: ==> Error: ProcessError".to_string(),
        "Exit code: 1".to_string(),
        format!("Log:       {}", log.display()),
        "Ran for:".to_string(),
        "The last lines of the log:".to_string(),
        format!("==> spack-installer: {} failed after", name_of(&bad)),
    ] {
        assert!(body.contains(&want), "{want:?} not in:\n{body}");
    }
    let done = messages_with(&mbox, &always);
    assert_eq!(done.len(), 1);
    assert!(
        done[0].contains(&format!(
            "Subject: [spack-installer] {} done: {always}",
            name_of(&always)
        )),
        "{}",
        done[0]
    );
    assert!(
        messages_with(&mbox, &good).is_empty(),
        "a success under `failures`"
    );
    assert!(
        messages_with(&mbox, &quiet).is_empty(),
        "`--mail never` was mailed"
    );
    assert!(worker_log.contains("mail sent"), "{worker_log}");
}

#[test]
fn a_missing_sendmail_is_logged_and_changes_nothing() {
    let s = TestSpool::with_config(
        "mail = \"always\"\nsendmail = \"/nonexistent/sendmail\"\nmail_domain = \"example.org\"\n",
    );
    s.ok(&["submit", "zlib"]);
    let out = s.drain();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("mail not sent: cannot run /nonexistent/sendmail")
            && log.contains(&format!("{}@example.org", me())),
        "{log}"
    );
    assert_eq!(s.where_is("000001-zlib").as_deref(), Some("done"));
}
