//! A real Postgres for the tests: a temporary cluster made with the system's `initdb` and
//! started with `pg_ctl`, listening only on a Unix socket in a temporary folder, or the server
//! at `RUNCAST_TEST_DATABASE_URL` when that is set. Each test gets a database of its own.
//!
//! The cluster is started once per test process and stopped when the process is gone (a
//! watchdog process waits for it), whichever way the process ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A Postgres server the tests may create databases on.
pub(crate) struct Server {
    /// The connection string of its `postgres` database, which new databases are made from.
    admin: String,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// The connection string of a new, empty database.
pub(crate) async fn database() -> String {
    let server = SERVER.get_or_init(|| match std::env::var("RUNCAST_TEST_DATABASE_URL") {
        Ok(url) => Ok(Server { admin: url }),
        Err(_) => Cluster::start().map(|cluster| Server {
            admin: cluster.url("postgres"),
        }),
    });
    let server = match server {
        Ok(server) => server,
        Err(error) => panic!("no Postgres for the tests: {error}"),
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "runcast_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (client, connection) = tokio_postgres::connect(&server.admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the tests' Postgres: {e}"));
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    drop(client);
    let _ = driver.await;
    let mut config: tokio_postgres::Config = server.admin.parse().expect("a valid admin URL");
    config.dbname(&name);
    config_string(&config)
}

/// A connection string for `config` (hosts, port, user and database).
fn config_string(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut url = format!("host={host} port={port}");
    if let Some(user) = config.get_user() {
        url.push_str(&format!(" user={user}"));
    }
    if let Some(password) = config.get_password() {
        url.push_str(&format!(" password={}", String::from_utf8_lossy(password)));
    }
    if let Some(dbname) = config.get_dbname() {
        url.push_str(&format!(" dbname={dbname}"));
    }
    url
}

/// A temporary cluster.
pub(crate) struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
}

impl Cluster {
    /// Makes and starts a cluster in a new temporary folder, stopped and removed once this
    /// process is gone.
    pub(crate) fn start() -> Result<Cluster, String> {
        let bin = bin_dir()?;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "runcast-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {dir:?}: {e}"))?;
        let cluster = Cluster { dir, bin };
        if is_root() {
            // initdb and the server refuse to run as root: they run as `postgres`.
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(&cluster.dir))?;
        }
        run(cluster
            .command("initdb")
            .args([
                "-U",
                "runcast",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(cluster.data()))?;
        cluster.watch_for_exit()?;
        cluster.pg_ctl_start()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The connection string of database `dbname`.
    pub(crate) fn url(&self, dbname: &str) -> String {
        format!(
            "host={} port=5432 user=runcast dbname={dbname}",
            self.dir.display()
        )
    }

    /// Starts the server, and waits until it accepts connections. Without `fsync`: the tests
    /// check what runcast does, not that the disk keeps a commit through a power cut, and each
    /// flush would cost them time (the benchmarks keep `fsync` on).
    pub(crate) fn pg_ctl_start(&self) -> Result<(), String> {
        let options = format!(
            "-k {} -c listen_addresses='' -p 5432 -c max_connections=300 -c fsync=off",
            self.dir.display()
        );
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-o", &options, "start"]))
    }

    /// Stops the server at once, as a crash would.
    pub(crate) fn pg_ctl_stop(&self) -> Result<(), String> {
        run(self.command("pg_ctl").arg("-D").arg(self.data()).args([
            "-m",
            "immediate",
            "-w",
            "stop",
        ]))
    }

    /// A command of the cluster's binaries, run as `postgres` when this process is root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Starts a process that stops the cluster and removes its folder once this process is
    /// gone.
    fn watch_for_exit(&self) -> Result<(), String> {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; \"$0\" -D \"$1\" -m immediate -w stop; rm -rf \"$2\"",
            pid = std::process::id()
        );
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--", "sh"]);
            command
        } else {
            Command::new("sh")
        };
        command
            .args(["-c", &script])
            .arg(self.bin.join("pg_ctl"))
            .arg(self.data())
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|e| format!("cannot start the cluster's watchdog: {e}"))
    }
}

/// Runs a command to its end; its output is the error if it fails.
fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// Where the system's `initdb` and `pg_ctl` are: on the `PATH`, or in Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest).
fn bin_dir() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    if let Some(dir) = on_path {
        return Ok(dir);
    }
    let debian = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(debian)
        .map_err(|_| "no initdb on the PATH nor in /usr/lib/postgresql: install PostgreSQL's server (apt-get install postgresql), or set RUNCAST_TEST_DATABASE_URL".to_owned())?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .ok_or_else(|| "no PostgreSQL server binaries in /usr/lib/postgresql".to_owned())
}
