//! Whether this member may take part in Raft with the state it finds on
//! disk: [`inspect`] reads the identity record, the acknowledged mark and
//! every record of the store (on a copy: opening a sled store can rewrite
//! it), and [`judge`] decides, purely, to open it, to create a new member's
//! store, or to refuse with one line that names the file, what is wrong,
//! and what to do.
//!
//! The rule behind every refusal: a member that lost its vote or an entry
//! it acknowledged can let two leaders win one term or make a committed
//! entry (a grant, an epoch) disappear, so it must never vote, acknowledge
//! or act again under its id. A new member (a new id) is always safe.

use crate::acked::{self, Mark};
use crate::identity::Identity;
use crate::store::{self, Layout, StoreReport};
use std::path::{Path, PathBuf};

/// Said after every refusal: how to bring the member back.
pub const RECOVERY: &str = "replace the member: haraft --retire-store, then a new node.id with join = true, \
     then haraftctl member replace (README: \"A member's Raft store was damaged\"); nothing was changed";

/// One file as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found<T> {
    Absent,
    Present(T),
    /// It exists but cannot be believed; the reason.
    Damaged(String),
    /// It could not be read at all (permissions, I/O): not evidence of
    /// damage, and not of anything else.
    Unreadable(String),
}

#[derive(Clone, Debug)]
pub struct Findings {
    pub layout: Layout,
    pub identity: Found<Identity>,
    pub mark: Found<Mark>,
    /// `Absent` when `raft/` does not exist or holds no files.
    pub store: Found<StoreReport>,
    /// Members whose stores were retired into this data directory
    /// (`retired-*/haraft.identity`) by `haraft --retire-store`.
    pub retired: Vec<u64>,
}

/// What the configuration says this member is.
#[derive(Clone, Debug)]
pub struct Expect {
    pub cluster: String,
    pub node: u64,
    /// `node.join = true`: waits to be added by `haraftctl member add`.
    pub join: bool,
    /// Where a database that haraft managed on this host was found (the
    /// agent knows its engine's files), e.g. "the epoch guard pgstate/db-epoch".
    pub managed_db: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The store is this member's and whole.
    Open,
    /// A new member: create its store with a new identity.
    Create,
    /// A creation that was interrupted before this member told Raft
    /// anything: finish it with the identity already written.
    Finish(Identity),
    Refuse(String),
}

/// Reads what is on disk without changing it.
pub fn inspect(layout: &Layout) -> Findings {
    let identity = match std::fs::read(layout.identity()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Absent,
        Err(e) => Found::Unreadable(e.to_string()),
        Ok(bytes) => match std::str::from_utf8(&bytes) {
            Err(_) => Found::Damaged("it is not text: it was damaged".into()),
            Ok(text) => Identity::parse(text).map_or_else(Found::Damaged, Found::Present),
        },
    };
    let mark = match std::fs::read(layout.acked()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Absent,
        Err(e) => Found::Unreadable(e.to_string()),
        Ok(bytes) => acked::parse(&bytes).map_or_else(Found::Damaged, Found::Present),
    };
    let store = inspect_store(&layout.raft_dir());
    let retired = retired_nodes(&layout.data_dir);
    Findings { layout: layout.clone(), identity, mark, store, retired }
}

fn inspect_store(dir: &Path) -> Found<StoreReport> {
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::Absent,
        Err(e) => return Found::Unreadable(e.to_string()),
        Ok(true) => return Found::Absent,
        Ok(false) => {}
    }
    // Beside the store, on the same file system, where a copy fits.
    let parent = dir.parent().unwrap_or(Path::new("."));
    let copy = match tempfile::Builder::new().prefix(".haraft-check-store").tempdir_in(parent) {
        Ok(d) => d,
        Err(e) => {
            return Found::Unreadable(format!("cannot make a temporary copy in {} to check it: {e}", show(parent)));
        }
    };
    if let Err(e) = copy_tree(dir, copy.path()) {
        return Found::Unreadable(format!("cannot copy it to check it: {e}"));
    }
    // sled asserts on some damage instead of returning an error; a panic
    // here is a verdict about the files, not a bug to report.
    let scanned = quietly(|| store::scan(copy.path()));
    match scanned {
        Ok(Ok(report)) => Found::Present(report),
        Ok(Err(reason)) => Found::Damaged(reason),
        Err(_) => Found::Damaged("sled cannot read it (it stopped on damaged data)".into()),
    }
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, catching a panic without printing it (the default hook would
/// print a backtrace an operator need not read). The hook is wrapped once
/// and stays quiet only on this thread while `f` runs, so panics elsewhere
/// are reported as before.
fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> std::thread::Result<T> {
    static WRAP: std::sync::Once = std::sync::Once::new();
    WRAP.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(f);
    QUIET.with(|q| q.set(false));
    result
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// The note `haraft --retire-store` leaves beside what it set aside.
const RETIRED_NOTE: &str = "retired.identity";

/// The node ids of members retired into `data_dir/retired-*/`.
fn retired_nodes(data_dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(data_dir) else { return Vec::new() };
    let mut nodes: Vec<u64> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("retired-"))
        .filter_map(|e| std::fs::read_to_string(e.path().join(RETIRED_NOTE)).ok())
        .filter_map(|text| Identity::parse(&text).ok().map(|i| i.node))
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

/// `haraft --retire-store`: moves this member's Raft state (store, identity,
/// mark) into `data_dir/retired-<now>/` with a note naming the member, so
/// that a replacement with a new id may start here and keep the database.
/// The agent must be stopped: a store whose lock is held is left alone.
pub fn retire(layout: &Layout, cluster: &str, node: u64, now_unix_ms: u64) -> Result<PathBuf, String> {
    let parts = [layout.raft_dir(), layout.identity(), layout.acked()];
    if !parts.iter().any(|p| p.exists()) {
        return Err(format!("{} holds no Raft state to retire", show(&layout.data_dir)));
    }
    if store::in_use(&layout.raft_dir()) {
        return Err(format!("the Raft store {} is in use: stop this member's agent first", show(&layout.raft_dir())));
    }
    let to = layout.data_dir.join(format!("retired-{now_unix_ms}"));
    std::fs::create_dir(&to).map_err(|e| format!("creating {}: {e}", show(&to)))?;
    let store = match &inspect(layout).identity {
        Found::Present(i) => i.store,
        _ => crate::identity::StoreId(0),
    };
    let note = Identity { cluster: cluster.to_string(), node, store, created_unix_ms: now_unix_ms };
    note.write(&to.join(RETIRED_NOTE)).map_err(|e| format!("writing {}: {e}", show(&to.join(RETIRED_NOTE))))?;
    for part in parts.iter().filter(|p| p.exists()) {
        let dest = to.join(part.file_name().expect("layout paths have file names"));
        std::fs::rename(part, &dest).map_err(|e| format!("moving {} to {}: {e}", show(part), show(&dest)))?;
    }
    Ok(to)
}

/// What [`inspect`] found, as lines for `haraft --check-store`.
pub fn describe(f: &Findings) -> Vec<String> {
    let log = |l: Option<crate::types::LogId>| {
        l.map_or("none".into(), |l| format!("entry {} (term {})", l.index, l.leader_id.term))
    };
    let vote = |v: Option<crate::types::Vote>| v.map_or("none".into(), |v| show_vote(&v));
    let mut lines = vec![
        found_line("identity", &f.layout.identity(), &f.identity, |i| {
            format!(
                "cluster {}, node {}, store {}, created {} UTC",
                i.cluster,
                i.node,
                i.store,
                haraft_core::status::utc(i.created_unix_ms)
            )
        }),
        found_line("acknowledged mark", &f.layout.acked(), &f.mark, |m| {
            format!("last {}, vote {}, purged up to {}", log(m.last_log), vote(m.vote), log(m.purged))
        }),
        found_line("raft store", &f.layout.raft_dir(), &f.store, |r| {
            format!(
                "{} entries, last {}, vote {}, purged up to {}, applied {}; every record passes its checksum",
                r.entries.len(),
                log(r.last_log()),
                vote(r.vote),
                log(r.purged),
                log(r.applied)
            )
        }),
    ];
    if !f.retired.is_empty() {
        lines.push(format!(
            "retired here: node {}",
            f.retired.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    lines
}

/// "WHAT PATH: ..." for one file as found.
fn found_line<T>(what: &str, path: &Path, found: &Found<T>, present: impl Fn(&T) -> String) -> String {
    let state = match found {
        Found::Absent => "none".to_string(),
        Found::Damaged(why) => format!("DAMAGED: {why}"),
        Found::Unreadable(why) => format!("UNREADABLE: {why}"),
        Found::Present(t) => present(t),
    };
    format!("{what} {}: {state}", show(path))
}

fn unreadable<T>(found: &Found<T>) -> Option<&str> {
    match found {
        Found::Unreadable(why) => Some(why),
        _ => None,
    }
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

/// Decides what the agent may do with what [`inspect`] found.
pub fn judge(f: &Findings, expect: &Expect) -> Verdict {
    let refuse = |text: String| Verdict::Refuse(format!("{text}: {RECOVERY}"));
    let (id_path, mark_path, raft_dir) =
        (show(&f.layout.identity()), show(&f.layout.acked()), show(&f.layout.raft_dir()));
    for (path, found) in
        [(&id_path, unreadable(&f.identity)), (&mark_path, unreadable(&f.mark)), (&raft_dir, unreadable(&f.store))]
    {
        if let Some(why) = found {
            return Verdict::Refuse(format!(
                "cannot read {path}: {why}: check its owner and permissions (the agent runs as the database OS user) and the disk; nothing was changed"
            ));
        }
    }
    if let Found::Damaged(why) = &f.identity {
        return refuse(format!("{id_path}: {why}"));
    }
    if let Found::Damaged(why) = &f.mark {
        return refuse(format!("{mark_path}: {why}"));
    }
    if let Found::Damaged(why) = &f.store {
        return refuse(format!("the Raft store {raft_dir}: {why}"));
    }
    let store = match &f.store {
        Found::Present(r) if r.records > 0 => Some(r),
        _ => None,
    };
    let acknowledged = match &f.mark {
        Found::Present(m) => m.acknowledged_anything(),
        _ => false,
    };
    let identity = match &f.identity {
        Found::Present(i) => i,
        // Absent (a damaged identity was refused above).
        _ => {
            if store.is_some() {
                return refuse(format!(
                    "{id_path} is missing but the Raft store {raft_dir} holds Raft state: the store's identity cannot be proven"
                ));
            }
            if acknowledged {
                return refuse(format!(
                    "{id_path} is missing but {mark_path} says this member already took part in Raft: it lost its identity and store"
                ));
            }
            return new_member(f, expect, &refuse);
        }
    };
    if identity.cluster != expect.cluster {
        return Verdict::Refuse(format!(
            "{id_path} belongs to cluster {:?} but the config names cluster {:?}: point node.data_dir at this cluster's data or fix cluster.name; nothing was changed",
            identity.cluster, expect.cluster
        ));
    }
    if identity.node != expect.node {
        return Verdict::Refuse(format!(
            "{id_path} belongs to node {} (store {}) but the config says this is node {}: point node.data_dir at this member's data or fix node.id; nothing was changed",
            identity.node, identity.store, expect.node
        ));
    }
    let mark = match &f.mark {
        Found::Present(m) => m,
        _ => {
            return refuse(format!(
                "{mark_path} is missing: what this member acknowledged to Raft cannot be proven (it was deleted or never written)"
            ));
        }
    };
    if mark.store != Some(identity.store) {
        return refuse(format!(
            "{mark_path} belongs to store {}, {id_path} names store {}: it was copied from elsewhere",
            mark.store.map_or("(none)".into(), |s| s.to_string()),
            identity.store
        ));
    }
    let Some(store) = store else {
        if !acknowledged {
            return Verdict::Finish(identity.clone());
        }
        return refuse(format!(
            "the Raft store {raft_dir} is empty but this member was initialized at {} UTC and {}: it lost its Raft state",
            haraft_core::status::utc(identity.created_unix_ms),
            describe_acknowledged(mark)
        ));
    };
    match &store.identity {
        None => {
            return refuse(format!(
                "the Raft store {raft_dir} has no identity record: it is not the store created with {id_path}"
            ));
        }
        Some(s) if s.store != identity.store || s.node != identity.node => {
            return refuse(format!(
                "the Raft store {raft_dir} belongs to node {} (store {}), this member is node {} (store {}): another member's store was copied in",
                s.node, s.store, identity.node, identity.store
            ));
        }
        Some(_) => {}
    }
    if let Some(cast) = mark.vote
        && !store.vote.is_some_and(|v| v >= cast)
    {
        return refuse(format!(
            "the Raft store {raft_dir} has {} but this member cast {}: it lost its vote",
            store.vote.map_or("no vote".into(), |v| show_vote(&v)),
            show_vote(&cast)
        ));
    }
    if let Some(purged) = mark.purged
        && store.purged.is_none_or(|p| p.index < purged.index)
    {
        return refuse(format!(
            "the Raft store {raft_dir} was purged up to {} but this member purged up to entry {}: it went back in time",
            store.purged.map_or("nothing".into(), |p| format!("entry {}", p.index)),
            purged.index
        ));
    }
    if let Some(last) = mark.last_log
        && !store.keeps(last)
    {
        return refuse(format!(
            "the Raft store {raft_dir} ends at {} but this member acknowledged entry {} (term {}): it lost entries",
            store.last_log().map_or("no entry".into(), |l| format!("entry {} (term {})", l.index, l.leader_id.term)),
            last.index,
            last.leader_id.term
        ));
    }
    Verdict::Open
}

fn show_vote(v: &crate::types::Vote) -> String {
    let kind = if v.committed { "a committed vote" } else { "an uncommitted vote" };
    format!("{kind} for node {} in term {}", v.leader_id.node_id, v.leader_id.term)
}

fn describe_acknowledged(mark: &Mark) -> String {
    match (mark.vote, mark.last_log) {
        (_, Some(l)) => format!("acknowledged log entry {} (term {})", l.index, l.leader_id.term),
        (Some(v), None) => format!("cast {}", show_vote(&v)),
        (None, None) => "purged its log".into(),
    }
}

/// No identity, no store, nothing acknowledged: a new member, unless a
/// database haraft managed here says this member existed before.
fn new_member(f: &Findings, expect: &Expect, refuse: &dyn Fn(String) -> Verdict) -> Verdict {
    if f.retired.contains(&expect.node) {
        return Verdict::Refuse(format!(
            "node {} was retired into {}: a replacement needs a new node.id (ids are never reused) and join = true, then haraftctl member replace",
            expect.node,
            show(&f.layout.data_dir)
        ));
    }
    let Some(db) = &expect.managed_db else { return Verdict::Create };
    if expect.join && !f.retired.is_empty() {
        // A replacement: a new id, added by member replace once it caught
        // up; the database is kept (a rebuild follows only if it is not
        // the cluster's).
        return Verdict::Create;
    }
    refuse(format!(
        "{} has no Raft store or identity, but haraft managed a database here ({db}): this member lost its Raft state",
        show(&f.layout.data_dir)
    ))
}

#[cfg(test)]
mod tests;
