//! Settings, and where each one came from. Precedence: command-line flag > environment >
//! config file > default. The environment variables are the old tool's, with their old
//! meanings; `SPACK_INSTALLER_DB_URL` means nothing any more and `config-check` says so.

use crate::error::{Error, Result};
use crate::executor::budget::{self, Size};
use crate::job::Mail;
use crate::time::Span;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG: &str = "/etc/spack-installer/config.toml";
pub const DEFAULT_SETUP_SCRIPT: &str = "/opt/spack/share/spack/setup-env.sh";
pub const DEFAULT_SENDMAIL: &str = "/usr/sbin/sendmail";

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "from")]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Env(v) => write!(f, "environment ${v}"),
            Source::Flag(v) => write!(f, "flag {v}"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Setting<T> {
    fn default(value: T) -> Self {
        Setting {
            value,
            source: Source::Default,
        }
    }
    fn set(&mut self, value: T, source: Source) {
        self.value = value;
        self.source = source;
    }
}

/// The config file, as written. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    spack: Option<PathBuf>,
    spack_setup_script: Option<PathBuf>,
    install_args: Option<Vec<String>>,
    max_parallel: Option<usize>,
    cpus: Option<usize>,
    min_free_memory: Option<Size>,
    min_free_disk: Option<Size>,
    install_tree: Option<PathBuf>,
    build_stage: Option<PathBuf>,
    check_interval: Option<Span>,
    heartbeat_interval: Option<Span>,
    max_heartbeat_age: Option<Span>,
    timeout_multiplier: Option<f64>,
    admin_group: Option<String>,
    max_pending_per_user: Option<usize>,
    keep_days: Option<u64>,
    default_estimate: Option<Span>,
    overdue_after: Option<Span>,
    kill_grace: Option<Span>,
    env_allow: Option<Vec<String>>,
    on_dependency_failure: Option<DependencyFailure>,
    log_level: Option<String>,
    executor: Option<ExecutorKind>,
    slurm: Option<SlurmConfig>,
    concretize: Option<Concretize>,
    concretize_parallel: Option<usize>,
    concretize_timeout: Option<Span>,
    concretize_max_age: Option<Span>,
    spack_config_paths: Option<Vec<PathBuf>>,
    spack_install_tree: Option<PathBuf>,
    on_finish: Option<Vec<String>>,
    hook_timeout: Option<Span>,
    mail: Option<Mail>,
    sendmail: Option<PathBuf>,
    mail_domain: Option<String>,
    metrics_dir: Option<PathBuf>,
}

/// Whether the worker asks Spack what a job will build before it builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Concretize {
    /// Concretize in the background; a job not yet concretized may still start as
    /// plain `spack install SPEC`.
    #[default]
    Background,
    /// A job starts only once concretized.
    Required,
    /// Never: installs are plain `spack install SPEC`.
    Off,
}

/// Where installs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// As child processes of the worker.
    #[default]
    Local,
    /// As Slurm batch jobs (`[slurm]`).
    Slurm,
}

/// The `[slurm]` section. Only the admin writes the config, so `extra_args` is the one
/// way to add sbatch options; nothing a user submits reaches sbatch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// `--cpus-per-task`, and Spack's `-j`.
    pub cpus_per_task: Option<u32>,
    /// `--mem`, as Slurm writes it ("8G").
    pub mem: Option<String>,
    /// How many of our jobs may be in Slurm at once (pending or running there).
    pub max_jobs: usize,
    /// `--time` for jobs without a timeout or estimate.
    #[serde(with = "span_secs")]
    pub time_limit: Duration,
    /// More sbatch options, as separate arguments.
    pub extra_args: Vec<String>,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            partition: None,
            account: None,
            qos: None,
            cpus_per_task: None,
            mem: None,
            max_jobs: 10,
            time_limit: Duration::from_secs(24 * 3600),
            extra_args: Vec::new(),
        }
    }
}

/// A `Span` ("2h", or seconds) in the file, a `Duration` in memory.
mod span_secs {
    use crate::time::Span;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        d.as_secs().serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Span::deserialize(d).map(|s| s.0)
    }
}

/// What happens to a pending job whose dependency failed or was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DependencyFailure {
    /// The job ends in `failed/` with reason "dependency ... failed".
    Fail,
    /// The job stays pending until someone cancels it or the dependency succeeds.
    Hold,
}

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    pub spack: Setting<Option<PathBuf>>,
    pub spack_setup_script: Setting<PathBuf>,
    pub install_args: Setting<Vec<String>>,
    pub max_parallel: Setting<usize>,
    /// The CPUs all running installs share (`None`: what the worker may use, see
    /// [`budget::available_cpus`]).
    pub cpus: Setting<Option<usize>>,
    /// Below this MemAvailable, no install starts.
    pub min_free_memory: Setting<Option<Size>>,
    /// Below this free space on `install_tree` or `build_stage`, no install starts.
    pub min_free_disk: Setting<Option<Size>>,
    pub install_tree: Setting<Option<PathBuf>>,
    pub build_stage: Setting<Option<PathBuf>>,
    pub check_interval: Setting<Duration>,
    pub heartbeat_interval: Setting<Duration>,
    pub max_heartbeat_age: Setting<Duration>,
    pub timeout_multiplier: Setting<f64>,
    pub admin_group: Setting<Option<String>>,
    pub max_pending_per_user: Setting<usize>,
    /// `cleanup` (and the daily timer that runs it) removes finished jobs older than this.
    pub keep_days: Setting<u64>,
    pub default_estimate: Setting<Duration>,
    /// The starvation bound: a job that has waited this long goes before every later
    /// submission (`scheduler::Policy::overdue_after`).
    pub overdue_after: Setting<Duration>,
    pub kill_grace: Setting<Duration>,
    pub env_allow: Setting<Vec<String>>,
    pub on_dependency_failure: Setting<DependencyFailure>,
    pub log_level: Setting<String>,
    pub executor: Setting<ExecutorKind>,
    pub slurm: Setting<SlurmConfig>,
    /// The concretization stage (`worker::concretize`).
    pub concretize: Setting<Concretize>,
    /// How many `spack spec` may run at once, beside the installs.
    pub concretize_parallel: Setting<usize>,
    pub concretize_timeout: Setting<Duration>,
    /// A concrete spec older than this is made again before its install.
    pub concretize_max_age: Setting<Duration>,
    /// Spack's configuration and package repositories: a concrete spec older than any
    /// file directly in these is made again before its install. Empty: derived from
    /// the `spack` path (`PREFIX/etc/spack`, `/etc/spack`, `~/.spack`).
    pub spack_config_paths: Setting<Vec<PathBuf>>,
    /// Spack's install tree, where `install_times.json` of installed packages give
    /// estimates. Unset: `PREFIX/opt/spack` of the `spack` that runs.
    pub spack_install_tree: Setting<Option<PathBuf>>,
    /// The program (argv, no shell) the worker runs after each job ends
    /// (`worker::hooks`); empty: none.
    pub on_finish: Setting<Vec<String>>,
    /// How long a hook or a mail may take before it is killed.
    pub hook_timeout: Setting<Duration>,
    /// When owners get mail, for jobs that do not say (`worker::mail`).
    pub mail: Setting<Mail>,
    pub sendmail: Setting<PathBuf>,
    /// Appended to owners' user names (`alice` → `alice@DOMAIN`); unset: local delivery.
    pub mail_domain: Setting<Option<String>>,
    /// Where `metrics.prom` is written (`worker::metrics`); unset: the spool's root.
    pub metrics_dir: Setting<Option<PathBuf>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            file: None,
            spack: Setting::default(None),
            spack_setup_script: Setting::default(PathBuf::from(DEFAULT_SETUP_SCRIPT)),
            install_args: Setting::default(Vec::new()),
            max_parallel: Setting::default(1),
            cpus: Setting::default(None),
            min_free_memory: Setting::default(None),
            min_free_disk: Setting::default(None),
            install_tree: Setting::default(None),
            build_stage: Setting::default(None),
            check_interval: Setting::default(Duration::from_secs(10)),
            heartbeat_interval: Setting::default(Duration::from_secs(30)),
            max_heartbeat_age: Setting::default(Duration::from_secs(60)),
            timeout_multiplier: Setting::default(2.0),
            admin_group: Setting::default(None),
            max_pending_per_user: Setting::default(100),
            keep_days: Setting::default(7),
            default_estimate: Setting::default(Duration::from_secs(30 * 60)),
            overdue_after: Setting::default(Duration::from_secs(48 * 3600)),
            kill_grace: Setting::default(Duration::from_secs(10)),
            env_allow: Setting::default(
                [
                    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_*", "TZ", "TMPDIR", "SPACK_*",
                ]
                .map(String::from)
                .to_vec(),
            ),
            on_dependency_failure: Setting::default(DependencyFailure::Fail),
            log_level: Setting::default("info".into()),
            executor: Setting::default(ExecutorKind::Local),
            slurm: Setting::default(SlurmConfig::default()),
            concretize: Setting::default(Concretize::Background),
            concretize_parallel: Setting::default(1),
            concretize_timeout: Setting::default(Duration::from_secs(600)),
            concretize_max_age: Setting::default(Duration::from_secs(24 * 3600)),
            spack_config_paths: Setting::default(Vec::new()),
            spack_install_tree: Setting::default(None),
            on_finish: Setting::default(Vec::new()),
            hook_timeout: Setting::default(Duration::from_secs(60)),
            mail: Setting::default(Mail::Never),
            sendmail: Setting::default(PathBuf::from(DEFAULT_SENDMAIL)),
            mail_domain: Setting::default(None),
            metrics_dir: Setting::default(None),
        }
    }
}

/// Seconds as the old tool wrote them ("10.0"), or a duration ("10s").
fn env_duration(var: &str, v: &str) -> Result<Duration> {
    if let Ok(f) = v.trim().parse::<f64>()
        && f.is_finite()
        && f > 0.0
    {
        return Ok(Duration::from_secs_f64(f));
    }
    crate::time::parse_span(v)
        .map(|s| s.0)
        .map_err(|e| Error::Usage(format!("${var}: {e}")))
}

impl Config {
    /// Load: defaults, then the file (explicit path must exist; the default path may be
    /// absent), then the environment. Flags are applied by the caller with [`Config::flag`].
    pub fn load(path: Option<&Path>) -> Result<Config> {
        Self::load_with_env(path, |k| std::env::var(k).ok())
    }

    pub fn load_with_env(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        let mut c = Config::default();
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let f: ConfigFile = toml::from_str(&text).map_err(|e| Error::Config {
                    path: path.clone(),
                    message: crate::job::toml_message(&e, &text),
                })?;
                c.apply_file(f, &path)?;
                c.file = Some(path);
            }
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let fix = if required {
                    "name an existing file with --config or $SPACK_INSTALLER_CONFIG, or leave both unset for the default"
                } else {
                    "make it readable to everyone (mode 0644), as the packages install it"
                };
                return Err(Error::Config {
                    path,
                    message: format!("cannot read it: {e}; {fix}"),
                });
            }
        }
        c.apply_env(env)?;
        Ok(c)
    }

    fn apply_file(&mut self, f: ConfigFile, path: &Path) -> Result<()> {
        let src = || Source::File(path.to_path_buf());
        if let Some(v) = f.spack {
            self.spack.set(Some(v), src());
        }
        if let Some(v) = f.spack_setup_script {
            self.spack_setup_script.set(v, src());
        }
        if let Some(v) = f.install_args {
            if let Some(j) = v
                .iter()
                .find(|a| *a == "-j" || a.starts_with("--jobs") || a.starts_with("-j"))
            {
                return Err(Error::Config {
                    path: path.into(),
                    message: format!(
                        "install_args: `{j}`: the worker gives each install its -j from `cpus`; \
                         remove it and set `cpus = N` for the total instead"
                    ),
                });
            }
            for a in &v {
                if !a.starts_with('-') {
                    return Err(Error::Config {
                        path: path.into(),
                        message: format!(
                            "install_args: `{a}` is not an option; only options such as \"--fail-fast\" belong here"
                        ),
                    });
                }
            }
            self.install_args.set(v, src());
        }
        if let Some(v) = f.max_parallel {
            if v == 0 {
                return Err(Error::Config {
                    path: path.into(),
                    message: "max_parallel must be at least 1".into(),
                });
            }
            self.max_parallel.set(v, src());
        }
        if let Some(v) = f.cpus {
            if v == 0 {
                return Err(Error::Config {
                    path: path.into(),
                    message: "cpus must be at least 1 (or left out: the CPUs the worker may use)"
                        .into(),
                });
            }
            self.cpus.set(Some(v), src());
        }
        if let Some(v) = f.min_free_memory {
            self.min_free_memory.set(Some(v), src());
        }
        if let Some(v) = f.install_tree {
            self.install_tree.set(Some(v), src());
        }
        if let Some(v) = f.build_stage {
            self.build_stage.set(Some(v), src());
        }
        if let Some(v) = f.min_free_disk {
            if self.install_tree.value.is_none() && self.build_stage.value.is_none() {
                return Err(Error::Config {
                    path: path.into(),
                    message: "min_free_disk needs the paths to check: set install_tree \
                              and/or build_stage (Spack's install_tree root and build_stage)"
                        .into(),
                });
            }
            self.min_free_disk.set(Some(v), src());
        }
        macro_rules! span {
            ($field:ident) => {
                if let Some(v) = f.$field {
                    self.$field.set(v.0, src());
                }
            };
        }
        span!(check_interval);
        span!(heartbeat_interval);
        span!(max_heartbeat_age);
        span!(default_estimate);
        span!(overdue_after);
        span!(kill_grace);
        span!(concretize_timeout);
        span!(concretize_max_age);
        // Shorter, and every concrete spec would be stale by the time it is written: the
        // lanes would ask Spack about the same jobs for ever.
        if self.concretize_max_age.value < Duration::from_secs(60) {
            return Err(Error::Config {
                path: path.into(),
                message: format!(
                    "concretize_max_age = {} is too short: a concrete spec would be stale as soon as it is made; use at least 1m (default 24h)",
                    humantime::format_duration(self.concretize_max_age.value)
                ),
            });
        }
        if let Some(v) = f.concretize {
            self.concretize.set(v, src());
        }
        if let Some(v) = f.concretize_parallel {
            if v == 0 {
                return Err(Error::Config {
                    path: path.into(),
                    message: "concretize_parallel must be at least 1 (to turn the stage off: concretize = \"off\")".into(),
                });
            }
            self.concretize_parallel.set(v, src());
        }
        if let Some(v) = f.spack_config_paths {
            self.spack_config_paths.set(v, src());
        }
        if let Some(v) = f.spack_install_tree {
            self.spack_install_tree.set(Some(v), src());
        }
        if let Some(v) = f.timeout_multiplier {
            self.timeout_multiplier.set(v, src());
        }
        if let Some(v) = f.admin_group {
            self.admin_group.set(Some(v), src());
        }
        if let Some(v) = f.max_pending_per_user {
            self.max_pending_per_user.set(v, src());
        }
        if let Some(v) = f.keep_days {
            self.keep_days.set(v, src());
        }
        if let Some(v) = f.env_allow {
            self.env_allow.set(v, src());
        }
        if let Some(v) = f.on_dependency_failure {
            self.on_dependency_failure.set(v, src());
        }
        if let Some(v) = f.log_level {
            self.log_level.set(v, src());
        }
        if let Some(v) = f.executor {
            self.executor.set(v, src());
        }
        if let Some(v) = f.slurm {
            if v.max_jobs == 0 {
                return Err(Error::Config {
                    path: path.into(),
                    message: "slurm.max_jobs must be at least 1".into(),
                });
            }
            self.slurm.set(v, src());
        }
        let bad = |message: String| Error::Config {
            path: path.into(),
            message,
        };
        if let Some(v) = f.on_finish {
            match v.first() {
                Some(p) if !Path::new(p).is_absolute() => {
                    return Err(bad(format!(
                        "on_finish: `{p}` is not an absolute path; write the program's full path, e.g. [\"/usr/local/bin/notify-install\"]"
                    )));
                }
                _ => self.on_finish.set(v, src()),
            }
        }
        span!(hook_timeout);
        if self.hook_timeout.value.is_zero() {
            return Err(bad("hook_timeout must be at least 1 second".into()));
        }
        if let Some(v) = f.mail {
            self.mail.set(v, src());
        }
        if let Some(v) = f.sendmail {
            if !v.is_absolute() {
                return Err(bad(format!(
                    "sendmail: `{}` is not an absolute path; e.g. \"{DEFAULT_SENDMAIL}\"",
                    v.display()
                )));
            }
            self.sendmail.set(v, src());
        }
        if let Some(v) = f.mail_domain {
            if !is_domain(&v) {
                return Err(bad(format!(
                    "mail_domain: `{}` is not a domain name (letters, digits, `-` and `.`), e.g. \"example.org\"",
                    v.escape_debug()
                )));
            }
            self.mail_domain.set(Some(v), src());
        }
        if let Some(v) = f.metrics_dir {
            self.metrics_dir.set(Some(v), src());
        }
        Ok(())
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<()> {
        let src = |v: &str| Source::Env(v.to_string());
        if let Some(v) = env("SPACK_SETUP_SCRIPT").filter(|v| !v.is_empty()) {
            self.spack_setup_script
                .set(PathBuf::from(v), src("SPACK_SETUP_SCRIPT"));
        }
        for (var, field) in [
            ("WORKER_CHECK_INTERVAL", &mut self.check_interval),
            ("WORKER_HEARTBEAT_INTERVAL", &mut self.heartbeat_interval),
            ("MAX_WORKER_HEARTBEAT_AGE", &mut self.max_heartbeat_age),
        ] {
            if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                field.set(env_duration(var, &v)?, src(var));
            }
        }
        if let Some(v) = env("JOB_TIMEOUT_MULTIPLIER").filter(|v| !v.is_empty()) {
            let m: f64 = v
                .parse()
                .ok()
                .filter(|m: &f64| m.is_finite() && *m > 0.0)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "$JOB_TIMEOUT_MULTIPLIER: `{v}` is not a positive number"
                    ))
                })?;
            self.timeout_multiplier
                .set(m, src("JOB_TIMEOUT_MULTIPLIER"));
        }
        if let Some(v) = env("RUST_LOG").filter(|v| !v.is_empty()) {
            self.log_level.set(v, src("RUST_LOG"));
        }
        Ok(())
    }

    /// Apply a command-line flag.
    pub fn flag<T>(setting: &mut Setting<T>, value: T, flag: &str) {
        setting.set(value, Source::Flag(flag.to_string()));
    }

    /// The timeout for a job: its own, else its estimate × the multiplier. A default
    /// estimate never makes a timeout (the old tool killed long builds that way).
    pub fn job_timeout(
        &self,
        timeout: Option<Duration>,
        estimate: Option<Duration>,
    ) -> Option<Duration> {
        timeout.or_else(|| estimate.map(|e| e.mul_f64(self.timeout_multiplier.value)))
    }

    /// The CPUs the local installs share: `cpus`, else what the worker may use.
    pub fn cpus(&self) -> usize {
        self.cpus.value.unwrap_or_else(budget::available_cpus)
    }

    /// Spack's `-j` for an install that starts while `busy` installs (itself included)
    /// run or start. In Slurm: `slurm.cpus_per_task` (the CPUs Slurm gave the job, not
    /// what Spack guesses from the node), else none. Locally: an equal share of `cpus`
    /// ([`budget::share`]). `install_args` may not hold a `-j` of its own.
    pub fn spack_jobs(&self, busy: usize) -> Option<u32> {
        match self.executor.value {
            ExecutorKind::Slurm => self.slurm.value.cpus_per_task,
            ExecutorKind::Local => Some(budget::share(self.cpus(), busy) as u32),
        }
    }

    /// The memory and disk guards, as set.
    pub fn guards(&self) -> budget::Guards {
        budget::Guards {
            min_free_memory: self.min_free_memory.value,
            min_free_disk: self.min_free_disk.value,
            disk_paths: [&self.install_tree.value, &self.build_stage.value]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
        }
    }

    /// Which Spack to run, and why that one: config `spack`, else the `bin/spack` of the
    /// setup script's Spack, else `spack` on PATH.
    pub fn resolve_spack(&self) -> Result<(PathBuf, String)> {
        if let Some(p) = &self.spack.value {
            return Ok((p.clone(), format!("`spack` from {}", self.spack.source)));
        }
        let script = &self.spack_setup_script.value;
        if let Some(root) = spack_root_of(script) {
            let bin = root.join("bin/spack");
            if is_executable(&bin) {
                return Ok((
                    bin,
                    format!(
                        "beside the setup script {} ({})",
                        script.display(),
                        self.spack_setup_script.source
                    ),
                ));
            }
        }
        if let Some(p) = find_on_path("spack") {
            return Ok((p, "`spack` on PATH".into()));
        }
        Err(Error::Other(format!(
            "no Spack found: not set as `spack` in the config, no executable bin/spack beside {} ({}), none on PATH; \
             set `spack = \"/path/to/spack/bin/spack\"` in {DEFAULT_CONFIG}, or run the worker with --dry-run",
            script.display(),
            self.spack_setup_script.source
        )))
    }
}

/// A domain for mail addresses: nothing a header could be bent with.
fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with(['.', '-'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// `<root>/share/spack/setup-env.sh` → `<root>`; `<root>/setup-env.sh` → `<root>` too (the
/// old tool's default).
pub fn spack_root_of(script: &Path) -> Option<PathBuf> {
    let dir = script.parent()?;
    if dir.ends_with("share/spack") {
        dir.parent()?.parent().map(Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
}

pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_env_over_file_over_default() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "check_interval = \"3s\"\nheartbeat_interval = 7\nmax_parallel = 2\n",
        )
        .unwrap();
        let c = Config::load_with_env(Some(&f), |k| {
            (k == "WORKER_CHECK_INTERVAL").then(|| "1.5".to_string())
        })
        .unwrap();
        assert_eq!(c.check_interval.value, Duration::from_millis(1500));
        assert_eq!(
            c.check_interval.source,
            Source::Env("WORKER_CHECK_INTERVAL".into())
        );
        assert_eq!(c.heartbeat_interval.value, Duration::from_secs(7));
        assert_eq!(c.heartbeat_interval.source, Source::File(f.clone()));
        assert_eq!(c.max_heartbeat_age.source, Source::Default);
        std::fs::write(&f, "chek_interval = 3\n").unwrap();
        assert!(Config::load_with_env(Some(&f), |_| None).is_err());
    }

    #[test]
    fn the_slurm_section() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "executor = \"slurm\"\n[slurm]\npartition = \"build\"\ncpus_per_task = 8\ntime_limit = \"2h\"\nextra_args = [\"--constraint=avx2\"]\n",
        )
        .unwrap();
        let c = Config::load_with_env(Some(&f), |_| None).unwrap();
        assert_eq!(c.executor.value, ExecutorKind::Slurm);
        assert_eq!(c.slurm.value.partition.as_deref(), Some("build"));
        assert_eq!(c.slurm.value.time_limit, Duration::from_secs(7200));
        assert_eq!(c.slurm.value.max_jobs, 10);
        assert_eq!(c.spack_jobs(1), Some(8));
        assert_eq!(c.spack_jobs(4), Some(8), "Slurm's -j is the job's own CPUs");
        std::fs::write(&f, "[slurm]\nmax_jobs = 0\n").unwrap();
        assert!(Config::load_with_env(Some(&f), |_| None).is_err());
        std::fs::write(&f, "[slurm]\nparition = \"x\"\n").unwrap();
        assert!(Config::load_with_env(Some(&f), |_| None).is_err());
        let mut slurm = Config::default();
        slurm.executor.value = ExecutorKind::Slurm;
        assert_eq!(slurm.spack_jobs(1), None);
    }

    #[test]
    fn concretization_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        let load = |text: &str| {
            std::fs::write(&f, text).unwrap();
            Config::load_with_env(Some(&f), |_| None)
        };
        let c = load("concretize = \"required\"\nconcretize_max_age = \"2h\"\n").unwrap();
        assert_eq!(c.concretize.value, Concretize::Required);
        assert_eq!(c.concretize_max_age.value, Duration::from_secs(7200));
        for (bad, says) in [
            (
                "concretize_max_age = \"5s\"\n",
                "concretize_max_age = 5s is too short",
            ),
            (
                "concretize_parallel = 0\n",
                "concretize_parallel must be at least 1",
            ),
            (
                "concretize = \"sometimes\"\n",
                "line 1, column 14: unknown variant `sometimes`",
            ),
        ] {
            let e = load(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_cpu_budget_and_guards() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "cpus = 64
min_free_memory = \"8G\"
min_free_disk = \"20G\"
build_stage = \"/tmp\"
",
        )
        .unwrap();
        let c = Config::load_with_env(Some(&f), |_| None).unwrap();
        assert_eq!(c.cpus(), 64);
        assert_eq!(c.spack_jobs(1), Some(64), "a lone install gets every CPU");
        assert_eq!(c.spack_jobs(4), Some(16));
        assert_eq!(c.spack_jobs(100), Some(1));
        let g = c.guards();
        assert_eq!(g.min_free_memory, Some(Size(8 << 30)));
        assert_eq!(g.disk_paths, vec![PathBuf::from("/tmp")]);
        assert_eq!(Config::default().cpus(), budget::available_cpus());
        for (bad, says) in [
            ("cpus = 0\n", "at least 1"),
            ("min_free_disk = \"1G\"\n", "install_tree"),
            ("min_free_memory = \"lots\"\n", "not a size"),
            ("install_args = [\"-j8\"]\n", "cpus = N"),
            ("install_args = [\"--jobs=8\"]\n", "cpus = N"),
        ] {
            std::fs::write(&f, bad).unwrap();
            let e = Config::load_with_env(Some(&f), |_| None).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_bad_value_is_reported_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "max_parallel = 2\noverdue_after = \"soon\"\n").unwrap();
        let e = Config::load_with_env(Some(&f), |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 2, column 17") && e.contains("`soon`"),
            "{e}"
        );
        std::fs::write(&f, "overdue_after = \"0s\"\n").unwrap();
        let c = Config::load_with_env(Some(&f), |_| None).unwrap();
        assert!(c.overdue_after.value.is_zero());
    }

    #[test]
    fn spack_root_from_setup_script() {
        assert_eq!(
            spack_root_of(Path::new("/opt/spack/share/spack/setup-env.sh")),
            Some("/opt/spack".into())
        );
        assert_eq!(
            spack_root_of(Path::new("/opt/spack/setup-env.sh")),
            Some("/opt/spack".into())
        );
    }

    #[test]
    fn timeouts_never_come_from_a_default_estimate() {
        let c = Config::default();
        assert_eq!(c.job_timeout(None, None), None);
        assert_eq!(
            c.job_timeout(None, Some(Duration::from_secs(60))),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            c.job_timeout(Some(Duration::from_secs(5)), Some(Duration::from_secs(60))),
            Some(Duration::from_secs(5))
        );
    }
}
