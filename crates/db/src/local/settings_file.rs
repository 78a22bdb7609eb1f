//! `haraft.conf`, the settings file both adapters write before every
//! start and at every settings change: its locking, its header, and the
//! lines whose rule is the same in both engines. Each adapter sets its
//! own names.

use super::{Local, Settings, quote, synchronous_standby_names};
use crate::DbError;
use std::sync::MutexGuard;

/// The setting that makes new transactions read-only by default, the same
/// in PostgreSQL and openGauss.
pub(crate) const READ_ONLY_SETTING: &str = "default_transaction_read_only";

/// A `haraft.conf` being written; the settings stay locked until `write`.
pub(crate) struct SettingsFile<'a> {
    pub(crate) settings: MutexGuard<'a, Settings>,
    local: &'a Local,
    text: String,
}

impl Local {
    /// Begins `haraft.conf` for the role the server is about to start in
    /// (or is in); new transactions read-write by default only when
    /// `writable` (the lease holder's server, about to take or taking
    /// writes).
    ///
    /// The settings stay locked until the file is written: the commit
    /// guard writes it beside whatever action is running, and neither may
    /// write an older picture over the other's newer one.
    pub(crate) fn begin_settings_file(&self, standby: bool, writable: bool) -> SettingsFile<'_> {
        let mut settings = self.settings.lock().expect("never poisoned");
        settings.writable = writable;
        // A standby has no synchronous standbys (the list of its time as
        // primary would make its first commits after a promotion wait for
        // members that do not stream from it yet), and takes no commits to
        // hold.
        if standby {
            settings.synchronous.clear();
            settings.synchronous_quorum = 0;
            settings.commits_held = false;
        }
        SettingsFile {
            settings,
            local: self,
            text: String::from("# Written by haraft before every start; edits are overwritten.\n"),
        }
    }
}

impl SettingsFile<'_> {
    pub(crate) fn set(&mut self, name: &str, value: impl Into<String>) {
        self.text.push_str(&format!("{name} = {}\n", value.into()));
    }

    /// The lines both engines write alike: which standbys confirm each
    /// commit (and the commit guard), and whether new transactions are
    /// read-only by default. A server promoted by anyone but haraft
    /// refuses writes by default (and libpq's
    /// `target_session_attrs=read-write` passes it by).
    pub(crate) fn set_commit_rules(&mut self) {
        let s = &self.settings;
        let names = synchronous_standby_names(&s.synchronous, s.synchronous_quorum, s.commits_held);
        let read_only = if s.writable { "off" } else { "on" };
        self.set("synchronous_standby_names", quote(&names));
        self.set(READ_ONLY_SETTING, read_only);
    }

    /// The names set so far, in order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.text.lines().filter_map(|l| l.split_once(" = ").map(|(k, _)| k))
    }

    /// Writes the file into the data directory and lets go of the
    /// settings.
    pub(crate) fn write(self) -> Result<(), DbError> {
        self.local.write_file(&self.local.cfg.data_dir.join("haraft.conf"), &self.text)
    }
}
