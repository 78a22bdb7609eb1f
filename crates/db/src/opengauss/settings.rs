//! haraft's settings for an openGauss server, in openGauss's names
//! (`haraft.conf`, `replconninfoN`), and the directory `gs_initdb` makes.

use super::{MAX_REPLCONNINFO, OpenGauss};
use crate::local::{io_err, quote, quote_ident};
use crate::{DbError, Upstream, exec};
use std::time::Duration;

/// The HA (replication) port of a node whose service port is `port`.
pub fn ha_port(port: u16) -> u16 {
    port.saturating_add(1)
}

/// The upstream named by a `replconninfo1` value haraft wrote:
/// `remotehost` and the service port behind `remoteport`.
pub fn parse_replconninfo(value: &str) -> Option<(String, u16)> {
    let value = value.trim().trim_matches('\'');
    let field = |name: &str| {
        value.split_whitespace().find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
    };
    let host = field("remotehost")?.to_string();
    let port: u16 = field("remoteport")?.parse().ok()?;
    Some((host, port.checked_sub(1)?))
}

impl OpenGauss {
    /// haraft.conf, openGauss's names: see the PostgreSQL adapter's
    /// `write_settings` for why each value.
    pub(super) fn write_settings(&self, standby: bool, writable: bool) -> Result<(), DbError> {
        let mut file = self.l.begin_settings_file(standby, writable);
        let (upstream, all_peers) = (file.settings.upstream.clone(), file.settings.peers.clone());
        let c = &self.l.cfg;
        let mut set = |k: &str, v: String| file.set(k, v);
        set("listen_addresses", quote(&c.listen_addresses));
        set("port", c.port.to_string());
        set("unix_socket_directory", quote(&c.socket_dir.display().to_string()));
        set("wal_level", "hot_standby".into());
        set("hot_standby", "on".into());
        set("hot_standby_feedback", "on".into());
        set("max_wal_senders", "10".into());
        set("max_replication_slots", "10".into());
        // 16 segments of 16 MB: what the rewind of a former primary needs
        // on the new one for minutes of a busy test cluster.
        set("wal_keep_segments", "16".into());
        set("wal_receiver_status_interval", "1".into());
        set("wal_sender_timeout", quote("2s"));
        set("password_encryption_type", "1".into());
        set("pgxc_node_name", quote(&c.application_name));
        // A standby names its upstream only (haraft chooses it; openGauss
        // would try every entry); a primary names every peer: openGauss
        // takes replication connections only on HA ports its entries name.
        let peers: Vec<&Upstream> = match (standby, upstream.as_ref()) {
            (true, Some(up)) => vec![up],
            (true, None) => Vec::new(),
            (false, _) => all_peers.iter().take(MAX_REPLCONNINFO).collect(),
        };
        for n in 1..=MAX_REPLCONNINFO {
            let value = peers.get(n - 1).map_or_else(String::new, |up| {
                format!(
                    "localhost={} localport={} remotehost={} remoteport={}",
                    c.listen_addresses,
                    ha_port(c.port),
                    up.host,
                    ha_port(up.port)
                )
            });
            set(&format!("replconninfo{n}"), quote(&value));
        }
        file.set_commit_rules();
        file.write()
    }

    /// The upstream the settings file names (survives an agent restart).
    pub(super) fn configured_upstream(&self) -> Option<String> {
        let (host, port) = parse_replconninfo(&self.l.settings_file_value("replconninfo1")?)?;
        Some(format!("{host}:{port}"))
    }

    /// gs_initdb into the (empty) data directory, then haraft's pg_hba
    /// and the include of its settings file.
    pub(super) async fn initdb(&self, timeout: Duration) -> Result<(), DbError> {
        let c = &self.l.cfg;
        self.l.make_dir(&c.data_dir)?;
        let pwfile = c.state_dir.join("initdb.pw");
        self.l.write_file(&pwfile, &format!("{}\n", c.superuser_password))?;
        let args = [
            "-D".to_string(),
            c.data_dir.display().to_string(),
            format!("--nodename={}", c.application_name),
            format!("--username={}", c.superuser),
            format!("--pwfile={}", pwfile.display()),
            format!("--locale={}", c.initdb_locale),
            format!("--encoding={}", c.initdb_encoding),
        ];
        let result = exec::run(&self.l.bin("gs_initdb"), args, &[("LC_ALL", "C")], c.run_as, timeout).await;
        let _ = std::fs::remove_file(&pwfile);
        result?;
        // gs_ctl build connects as the superuser (PGUSER) on the
        // replication protocol, the walreceivers as the replication user.
        let hba = format!(
            "# Written by haraft at bootstrap.\n\
             local all all peer\n\
             host all all 0.0.0.0/0 md5\n\
             host all all ::/0 md5\n\
             host replication {0},{1} 0.0.0.0/0 md5\n\
             host replication {0},{1} ::/0 md5\n",
            quote_ident(&c.replication_user),
            quote_ident(&c.superuser)
        );
        self.l.write_file(&c.data_dir.join("pg_hba.conf"), &hba)?;
        let conf = c.data_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(|e| io_err(&conf, e))?;
        text.push_str("\n# haraft's settings (replication, role) come last.\ninclude_if_exists = 'haraft.conf'\n");
        self.l.write_file(&conf, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_is_read_back_from_replconninfo() {
        let v = "'localhost=127.0.0.1 localport=6433 remotehost=10.0.0.3 remoteport=7433'";
        assert_eq!(parse_replconninfo(v), Some(("10.0.0.3".into(), 7432)));
        assert_eq!(parse_replconninfo("''"), None);
        assert_eq!(parse_replconninfo("'remotehost=h remoteport=0'"), None);
    }
}
