//! `haraftctl completions SHELL`: completion scripts generated from the
//! CLI's own definition (subcommands, their flags, member-name positions
//! left to the shell), so they never drift from it.

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// (path of subcommand names, its long flags, its subcommands).
fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, Vec<String>, Vec<String>)>) {
    let flags: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_id() != "help")
        .filter_map(|a| a.get_long())
        .map(|l| format!("--{l}"))
        .collect();
    let subs: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .flat_map(|s| std::iter::once(s.get_name().to_string()).chain(s.get_visible_aliases().map(str::to_string)))
        .collect();
    out.push((path.clone(), flags, subs));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let mut p = path.clone();
        p.push(sub.get_name().to_string());
        walk(sub, p, out);
        for alias in sub.get_visible_aliases() {
            let mut p = path.clone();
            p.push(alias.to_string());
            walk(sub, p, out);
        }
    }
}

pub fn script(cmd: &clap::Command, shell: Shell) -> String {
    let name = cmd.get_name().to_string();
    // Building propagates the global flags (--endpoints, the TLS and token
    // files) to every subcommand, where they are accepted too; it also adds
    // clap's help subcommand and --help, which are left out as before.
    let mut cmd = cmd.clone();
    cmd.build();
    let mut entries = Vec::new();
    walk(&cmd, Vec::new(), &mut entries);
    match shell {
        Shell::Bash | Shell::Zsh => {
            let mut cases = String::new();
            for (path, flags, subs) in &entries {
                let words: Vec<&str> = subs.iter().chain(flags).map(String::as_str).collect();
                cases.push_str(&format!("        \"{}\") words=\"{}\" ;;\n", path.join(" "), words.join(" ")));
            }
            let (shell_name, prelude) = match shell {
                Shell::Zsh => ("zsh", "autoload -U +X bashcompinit && bashcompinit\n"),
                _ => ("bash", ""),
            };
            format!(
                "# {name} completion ({shell_name}); load it from your shell's rc file: source <({name} completions {shell_name})\n{prelude}\
                 _{fname}() {{\n    local cur=\"${{COMP_WORDS[COMP_CWORD]}}\" path=\"\" w words\n    \
                 for w in \"${{COMP_WORDS[@]:1:COMP_CWORD-1}}\"; do\n        case $w in -*) ;; *) \
                 case \"${{path:+$path }}$w\" in\n{known}            *) ;; esac ;; esac\n    done\n    \
                 case \"$path\" in\n{cases}        *) words=\"\" ;;\n    esac\n    \
                 COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n}}\ncomplete -F _{fname} {name}\n",
                fname = name.replace('-', "_"),
                known = entries
                    .iter()
                    .filter(|(p, _, _)| !p.is_empty())
                    .map(|(p, _, _)| format!("            \"{0}\") path=\"{0}\" ;;\n", p.join(" ")))
                    .collect::<String>(),
            )
        }
        Shell::Fish => {
            let mut out = format!("# {name} completion (fish): save as ~/.config/fish/completions/{name}.fish\n");
            for (path, flags, subs) in &entries {
                let condition = match path.as_slice() {
                    [] => "__fish_use_subcommand".to_string(),
                    p => format!("__fish_seen_subcommand_from {}", p.last().expect("not empty")),
                };
                for s in subs {
                    out.push_str(&format!("complete -c {name} -f -n '{condition}' -a {s}\n"));
                }
                for f in flags {
                    out.push_str(&format!("complete -c {name} -f -n '{condition}' -l {}\n", &f[2..]));
                }
            }
            out
        }
    }
}
