//! What is generated from the CLI's own definition, so that it never drifts
//! from it: shell completion scripts (`haraftctl completions SHELL`, by
//! clap_complete) and the man pages (`haraftctl man --dir DIR`, by
//! clap_mangen; the Debian package's build runs both).
//!
//! Both commands are visible: clap_complete completes hidden subcommands
//! and flags too, so a hidden generator command would be offered to every
//! user anyway.
//!
//! Member names are not completed: they live in the cluster, and asking it
//! from a completion function would hang a shell on an unreachable
//! cluster. Those positions fall back to the shell's default completion.

use anyhow::Context;
use std::path::Path;

pub use clap_complete::Shell;

/// The completion script for `shell`. clap's `help` subcommand is left
/// out (`--help` stays), as in the scripts written by hand before.
pub fn completions(cmd: &clap::Command, shell: Shell) -> Vec<u8> {
    let mut cmd = cmd.clone().disable_help_subcommand(true);
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// Writes `NAME.1` and one `NAME-SUB[-SUB].1` per visible subcommand into
/// `dir` (created if missing); returns the files written, sorted.
pub fn man_pages(cmd: &clap::Command, dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating the man page directory {}", dir.display()))?;
    clap_mangen::generate_to(cmd.clone(), dir).with_context(|| format!("writing man pages into {}", dir.display()))?;
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".1"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("tool")
            .about("a tool")
            .arg(clap::Arg::new("endpoints").long("endpoints").global(true))
            .subcommand(
                clap::Command::new("member")
                    .about("members")
                    .subcommand(clap::Command::new("add").about("add one").arg(clap::Arg::new("id").long("id")))
                    .subcommand(clap::Command::new("remove").about("remove one")),
            )
    }

    #[test]
    fn every_shell_gets_a_script_without_the_help_subcommand() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::Elvish, Shell::PowerShell] {
            let text = String::from_utf8(completions(&cli(), shell)).expect("utf-8");
            assert!(text.contains("member") && text.contains("remove") && text.contains("endpoints"), "{shell}");
        }
        let bash = String::from_utf8(completions(&cli(), Shell::Bash)).expect("utf-8");
        assert!(!bash.contains("tool__member__help"), "{bash}");
    }

    #[test]
    fn a_man_page_per_visible_subcommand() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = man_pages(&cli(), dir.path()).expect("man pages");
        assert_eq!(files, ["tool-member-add.1", "tool-member-remove.1", "tool-member.1", "tool.1"]);
        let page = std::fs::read_to_string(dir.path().join("tool-member-add.1")).expect("page");
        assert!(page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH tool-member-add 1"), "{page}");
        assert!(page.contains("\\-\\-id"), "{page}");
    }

    #[test]
    fn an_unwritable_directory_is_named() {
        let e = man_pages(&cli(), Path::new("/proc/no/such/dir")).expect_err("cannot write there");
        assert!(format!("{e:#}").contains("/proc/no/such/dir"), "{e:#}");
    }
}
