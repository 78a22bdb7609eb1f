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
    /// It exists but cannot be read or believed; the reason.
    Damaged(String),
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
        Err(e) => Found::Damaged(format!("cannot read it: {e}")),
        Ok(bytes) => match std::str::from_utf8(&bytes) {
            Err(_) => Found::Damaged("it is not text: it was damaged".into()),
            Ok(text) => Identity::parse(text).map_or_else(Found::Damaged, Found::Present),
        },
    };
    let mark = match std::fs::read(layout.acked()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Absent,
        Err(e) => Found::Damaged(format!("cannot read it: {e}")),
        Ok(bytes) => acked::parse(&bytes).map_or_else(Found::Damaged, Found::Present),
    };
    let store = inspect_store(&layout.raft_dir());
    let retired = retired_nodes(&layout.data_dir);
    Findings { layout: layout.clone(), identity, mark, store, retired }
}

fn inspect_store(dir: &Path) -> Found<StoreReport> {
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::Absent,
        Err(e) => return Found::Damaged(format!("cannot read it: {e}")),
        Ok(true) => return Found::Absent,
        Ok(false) => {}
    }
    let copy = match tempfile::Builder::new().prefix("haraft-check-store").tempdir() {
        Ok(d) => d,
        Err(e) => return Found::Damaged(format!("cannot make a temporary copy to check it: {e}")),
    };
    if let Err(e) = copy_tree(dir, copy.path()) {
        return Found::Damaged(format!("cannot copy it to check it: {e}"));
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

/// The node ids of identities in `data_dir/retired-*/`.
fn retired_nodes(data_dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(data_dir) else { return Vec::new() };
    let mut nodes: Vec<u64> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("retired-"))
        .filter_map(|e| std::fs::read_to_string(e.path().join("haraft.identity")).ok())
        .filter_map(|text| Identity::parse(&text).ok().map(|i| i.node))
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

/// Where `haraft --retire-store` puts a store it sets aside.
pub fn retire_dir(layout: &Layout, now_unix_ms: u64) -> PathBuf {
    layout.data_dir.join(format!("retired-{now_unix_ms}"))
}

fn show(path: &Path) -> String {
    path.display().to_string()
}

/// Decides what the agent may do with what [`inspect`] found.
pub fn judge(f: &Findings, expect: &Expect) -> Verdict {
    let refuse = |text: String| Verdict::Refuse(format!("{text}: {RECOVERY}"));
    let (id_path, mark_path, raft_dir) =
        (show(&f.layout.identity()), show(&f.layout.acked()), show(&f.layout.raft_dir()));
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
        Found::Damaged(_) => unreachable!("refused above"),
        Found::Absent => {
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
        return refuse(format!(
            "{id_path} belongs to cluster {:?}, the config names cluster {:?}: point node.data_dir at this cluster's data or fix cluster.name",
            identity.cluster, expect.cluster
        ));
    }
    if identity.node != expect.node {
        return refuse(format!(
            "{id_path} belongs to node {} (store {}), the config says this is node {}: the data of another member",
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
    format!("a vote for node {} in term {}", v.leader_id.node_id, v.leader_id.term)
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
