//! `validate FILE...`: check hand-written job files (and stack files for `submit --file`,
//! told apart by their `[[job]]` tables) against the schema before dropping them, with
//! line and column for syntax errors. The same checks as the worker's intake,
//! except those that need the queue (limits, references, cycles).

use super::Ctx;
use crate::error::{Result, exit};
use crate::job::{JobFile, MAX_FILE_SIZE, RequestFile};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub fn run(_ctx: &Ctx, a: Args) -> Result<i32> {
    let mut code = exit::OK;
    for f in &a.files {
        let result = match std::fs::metadata(f) {
            Err(e) => Err(e.to_string()),
            Ok(m) if !m.is_file() => Err("not a regular file".to_string()),
            Ok(m) if m.len() > MAX_FILE_SIZE => {
                Err(format!("{} bytes; the limit is {MAX_FILE_SIZE}", m.len()))
            }
            Ok(_) => match std::fs::read_to_string(f) {
                Err(e) => Err(e.to_string()),
                Ok(text) if f.to_string_lossy().ends_with(crate::spool::REQUEST_SUFFIX) => {
                    RequestFile::parse_and_validate(&text)
                        .map(|r| format!("{r:?}"))
                        .map_err(|e| e.to_string())
                }
                Ok(text) if super::submit::is_stack(&text) => super::submit::parse_stack(&text)
                    .map(|jobs| {
                        let specs: Vec<String> =
                            jobs.iter().map(|j| format!("`{}`", j.spec)).collect();
                        format!(
                            "a stack file of {} jobs for `submit --file`: {}",
                            jobs.len(),
                            specs.join(", ")
                        )
                    }),
                Ok(text) => JobFile::parse_and_validate(&text)
                    .map(|s| {
                        format!(
                            "installs `{}` (package {}, priority {})",
                            s.spec,
                            s.spec.package(),
                            s.priority
                        )
                    })
                    .map_err(|e| e.to_string()),
            },
        };
        match result {
            Ok(what) => println!("{}: ok: {what}", f.display()),
            Err(e) => {
                println!("{}: {e}", f.display());
                code = exit::USAGE;
            }
        }
    }
    Ok(code)
}
