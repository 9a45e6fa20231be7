//! How the worker learns of new files: inotify through the `notify` crate, as a hint.
//! It acts on close-after-write and moved-in events (a `cp` still writing a file sends
//! neither) and on the creation of anything that is not a regular file (a symlink, FIFO
//! or directory sends nothing else, and is to be rejected at once). An overflowed event
//! queue asks for a full rescan. The periodic rescan in the loop is the safety net for
//! everything inotify misses, and the whole mechanism when it is unavailable (NFS).

use super::Event;
use crate::spool::store::is_ticket;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::Path;
use std::sync::mpsc::Sender;

pub fn watch(dir: &Path, tx: Sender<Event>) -> notify::Result<RecommendedWatcher> {
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let ev = match res {
            Ok(ev) => ev,
            Err(_) => {
                let _ = tx.send(Event::Rescan);
                return;
            }
        };
        if ev.need_rescan() {
            let _ = tx.send(Event::Rescan);
            return;
        }
        let take_any = matches!(
            ev.kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Modify(ModifyKind::Name(
                    RenameMode::To | RenameMode::Both | RenameMode::Any
                ))
        );
        let created = matches!(ev.kind, EventKind::Create(_));
        if !take_any && !created {
            return;
        }
        let names: Vec<String> = ev
            .paths
            .iter()
            .filter(|p| {
                take_any
                    || matches!(ev.kind, EventKind::Create(CreateKind::Folder))
                    || std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_file())
            })
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .filter(|n| is_ticket(n))
            .collect();
        if !names.is_empty() {
            let _ = tx.send(Event::Incoming(names));
        }
    })?;
    w.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(w)
}
