//! The shell completion scripts, tried the way a shell uses them: the script that
//! `completions SHELL` prints is loaded into the real shell, whose completion machinery is
//! run on real command lines (bash: the completion function with COMP_WORDS/COMP_CWORD;
//! zsh: a real interactive zsh in a pseudo-terminal, sent a TAB; fish: `complete -C`).
//! A shell that is not installed makes its test say SKIPPED, never pass quietly.

mod support;

use std::process::Command;
use support::BIN;

fn script(shell: &str) -> String {
    let out = Command::new(BIN)
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(out.status.success(), "completions {shell} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn have(shell: &str, test: &str) -> bool {
    let ok = Command::new(shell)
        .arg("-c")
        .arg("exit 0")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: {shell} is not installed (apt-get install {shell}; .ci/run does)"
        );
    }
    ok
}

/// The command lines every shell must complete, and words each answer must contain.
const CASES: &[(&str, &[&str])] = &[
    ("spack-installer sub", &["submit"]),
    ("spack-installer worker ", &["run", "start", "stop", "info"]),
    (
        "spack-installer status --state ",
        &["pending", "running", "failed", "cancelled"],
    ),
    (
        "spack-installer worker run --",
        &["--until-idle", "--dry-run"],
    ),
    ("spack-installer completions ", &["bash", "zsh", "fish"]),
];

fn check(shell: &str, line: &str, got: &[String], want: &[&str]) {
    for w in want {
        assert!(
            got.iter().any(|g| g == w),
            "{shell}: `{line}<TAB>` offers {got:?}, not {w}"
        );
    }
}

#[test]
fn bash_completes_past_the_first_word() {
    if !have("bash", "bash_completes_past_the_first_word") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spack-installer.bash");
    std::fs::write(&file, script("bash")).unwrap();
    for (line, want) in CASES {
        // Split as readline does: the word under the cursor is the last (maybe empty) one.
        let mut words: Vec<&str> = line.split(' ').collect();
        let cword = words.len() - 1;
        let cur = words[cword];
        let prev = words[cword - 1];
        let quoted: Vec<String> = words.drain(..).map(|w| format!("'{w}'")).collect();
        let prog = format!(
            "source '{}'\nCOMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n\
             COMP_WORDS=({}); COMP_CWORD={cword}\n\
             fn=$(complete -p spack-installer | sed 's/.*-F \\([^ ]*\\).*/\\1/')\n\
             \"$fn\" spack-installer '{cur}' '{prev}'\n\
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display(),
            quoted.join(" ")
        );
        let out = Command::new("bash")
            .args(["--norc", "--noprofile", "-c", &prog])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bash: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect();
        check("bash", line, &got, want);
    }
}

/// Drives an interactive `zsh -f` in a pseudo-terminal (zsh/zpty): compinit with the
/// script on fpath, `compadd` wrapped to print each match, then the line and a TAB.
const ZSH_DRIVER: &str = r#"
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "fpath=($1 \$fpath); PROMPT=; RPROMPT=; autoload -U compinit; compinit -u -D"
zpty -w z 'compadd() { if (( $@[(I)-[OAD]] )); then builtin compadd "$@"; return; fi; local -a __h; builtin compadd -A __h "$@"; local x; for x in $__h; do print -r -- "<HIT>$x"; done; builtin compadd -Q -U "" }'
zpty -w z '_end() { print -r -- "<END>" }; comppostfuncs=(_end)'
zpty -w z 'zstyle ":completion:*" list-prompt ""; zstyle ":completion:*" menu no; bindkey "^I" complete-word'
zpty -w z "print -r -- '<READY>'"
local line
while zpty -r z line; do [[ $line == *'<READY>'* && $line != *print* ]] && break; done
zpty -w -n z "$2"$'\t'
while zpty -r z line; do
  [[ $line == *'<END>'* ]] && break
  [[ $line == *'<HIT>'* ]] && print -r -- "${${line##*<HIT>}%%$'\r'}"
done
zpty -d z
"#;

#[test]
fn zsh_completes_past_the_first_word() {
    if !have("zsh", "zsh_completes_past_the_first_word") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("_spack-installer"), script("zsh")).unwrap();
    let driver = dir.path().join("drive.zsh");
    std::fs::write(&driver, ZSH_DRIVER).unwrap();
    for (line, want) in CASES {
        let out = Command::new("timeout")
            .arg("20")
            .arg("zsh")
            .arg("-f")
            .arg(&driver)
            .arg(dir.path())
            .arg(line)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "zsh driver ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        check("zsh", line, &got, want);
    }
}

#[test]
fn fish_completes_past_the_first_word() {
    if !have("fish", "fish_completes_past_the_first_word") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spack-installer.fish");
    std::fs::write(&file, script("fish")).unwrap();
    for (line, want) in CASES {
        let out = Command::new("fish")
            .args(["--no-config", "-c"])
            .arg(format!("source '{}'; complete -C '{line}'", file.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fish: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect();
        check("fish", line, &got, want);
    }
}
